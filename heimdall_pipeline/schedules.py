"""survey_schedule: recurring survey sessions over a list of frequencies (off by default)."""

import os

from dagster import DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, schedule

from heimdall_pipeline.jobs import request_session_job
from heimdall_pipeline.resources.survey import SurveySettings
from heimdall_pipeline.tags import SURVEY_TAG


@schedule(cron_schedule=os.environ.get("HEIMDALL_SURVEY_CRON", "*/10 * * * *"), job=request_session_job,
          default_status=DefaultScheduleStatus.STOPPED, execution_timezone="UTC",
          description="Requests a survey session each tick, cycling through the configured frequencies.")
def survey_schedule(context: ScheduleEvaluationContext, survey: SurveySettings) -> RunRequest:
    tick = context.scheduled_execution_time
    frequency = survey.frequencies_hz[int(tick.timestamp() // 60) % len(survey.frequencies_hz)]
    session_key = "survey" + tick.strftime("%Y%m%dt%H%Mz")
    return RunRequest(
        run_key=session_key,
        run_config={"ops": {"request_session_op": {"config": {
            "center_frequency_hz": frequency, "duration_s": survey.duration_s,
            "sample_rate_hz": survey.sample_rate_hz, "session_key": session_key}}}},
        tags={SURVEY_TAG: "1"},
    )
