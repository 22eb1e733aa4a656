"""The Dagster code location `heimdall_pipeline`."""

from dagster import Definitions, in_process_executor

from heimdall_pipeline import settings
from heimdall_pipeline.process_memory import keep_large_arrays_out_of_the_heap
from heimdall_pipeline.assets.acquisition import raw_iq
from heimdall_pipeline.assets.metrics import receiver_metrics
from heimdall_pipeline.assets.localization import session_localization
from heimdall_pipeline.assets.sessions import session_summary
from heimdall_pipeline.checks import raw_iq_captured, raw_iq_gnss_quality, raw_iq_integrity, receiver_metrics_rows
from heimdall_pipeline.jobs import request_session_job, session_job, session_analysis_job
from heimdall_pipeline.assets.lifecycle import archive_schedule, archive_sessions_job
from heimdall_pipeline.resources import build_resources
from heimdall_pipeline.schedules import survey_schedule
from heimdall_pipeline.sensors import recording_import_sensor, session_analysis_sensor, session_request_sensor

# Local runs find the embedded services' settings; deployments set the variables themselves.
settings.load_embedded_env()
# Every process that runs this code location (run workers, `heimdall session run`) holds
# captures as large arrays: freed, they go back to the OS (process_memory.py).
keep_large_arrays_out_of_the_heap()

resources = build_resources()

defs = Definitions(
    assets=[raw_iq, receiver_metrics, session_summary, session_localization],
    asset_checks=[raw_iq_integrity, raw_iq_captured, raw_iq_gnss_quality, receiver_metrics_rows],
    jobs=[session_job, session_analysis_job, request_session_job, archive_sessions_job],
    sensors=[session_request_sensor, session_analysis_sensor, recording_import_sensor],
    schedules=[survey_schedule, archive_schedule],
    resources=resources,
    # A session run already records its receivers concurrently; one process per step would only
    # add a Python start-up per step (seconds each on a 2-core machine).
    executor=in_process_executor,
)
