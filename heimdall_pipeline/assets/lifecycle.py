"""archive_sessions_job + archive_schedule: the scheduled side of heimdall_pipeline.lifecycle.

Daily (03:30 UTC, STOPPED by default: turn it on in the UI or with `dagster schedule start`),
finished sessions older than the window lose their Dagster partitions; their data stays in S3 and
TimescaleDB and `heimdall session restore KEY...` brings them back. The window is the op config
`older_than_days`, defaulting to HEIMDALL_ARCHIVE_AFTER_DAYS (90)."""


import os

from dagster import (
    Config, DefaultScheduleStatus, OpExecutionContext, RunRequest, ScheduleEvaluationContext, job, op, schedule,
)
from pydantic import Field

from heimdall_pipeline.resources import HeimdallDatabase
from heimdall_pipeline.tags import MAINTENANCE_TAG


class ArchiveConfig(Config):
    older_than_days: float | None = Field(
        default=None, description="Archive finished sessions scheduled more than this many days ago "
                                  "(default: HEIMDALL_ARCHIVE_AFTER_DAYS, else 90)")
    dry_run: bool = Field(default=False, description="Only list what would be archived")


@op(description="Removes old sessions' dynamic partitions (data kept) and marks them archived; "
                "never a session with a run in progress.")
def archive_sessions_op(context: OpExecutionContext, config: ArchiveConfig, database: HeimdallDatabase) -> dict:
    from heimdall_pipeline.lifecycle import archive_after_days, archive_sessions  # the database layer (SQLAlchemy) loads with its first run, not the code location

    days = config.older_than_days if config.older_than_days is not None else archive_after_days()
    result = archive_sessions(context.instance, database.engine(), days, dry_run=config.dry_run,
                              log=context.log.info)
    context.log.info(f"{'would archive' if result.dry_run else 'archived'} {len(result.archived)} session(s) "
                     f"older than {days:g} days; skipped (run in progress): {result.skipped_in_progress or 'none'}")
    context.add_output_metadata({"archived": len(result.archived), "skipped_in_progress": len(result.skipped_in_progress),
                                 "older_than_days": days, "dry_run": result.dry_run,
                                 "sessions": ", ".join(result.archived[:200])})
    return {"archived": result.archived, "skipped_in_progress": result.skipped_in_progress}


@job(description="Archive old sessions' partitions (data stays in S3 and TimescaleDB; "
                 "`heimdall session restore KEY` brings them back).",
     tags={MAINTENANCE_TAG: "archive"})
def archive_sessions_job():
    archive_sessions_op()


@schedule(cron_schedule=os.environ.get("HEIMDALL_ARCHIVE_CRON", "30 3 * * *"), job=archive_sessions_job,
          default_status=DefaultScheduleStatus.STOPPED, execution_timezone="UTC",
          description="Daily archive of sessions older than HEIMDALL_ARCHIVE_AFTER_DAYS (default 90 days).")
def archive_schedule(context: ScheduleEvaluationContext) -> RunRequest:
    return RunRequest(run_key=f"archive-{context.scheduled_execution_time:%Y%m%d}")
