"""A requested session run in the tests: the runs of runner.run_session, through Dagster's testing
API (execute_in_process), so any Definitions and ephemeral instances can be used."""

import sqlalchemy as sa

from heimdall_pipeline.db.sessions_repo import get_session
from heimdall_pipeline.runner import SessionRunResult, session_runs


def run_session_in_process(defs, instance, engine, session_key: str) -> SessionRunResult:
    run_ids, success = [], True
    for job_name, tags in session_runs(instance, engine, session_key):
        result = defs.resolve_job_def(job_name).execute_in_process(instance=instance, tags=tags, raise_on_error=False)
        run_ids.append(result.run_id)
        success = success and result.success
    try:
        session = get_session(engine, session_key)
    except sa.exc.OperationalError:  # a fault test stopped the database
        session = None
    return SessionRunResult(session_key, tuple(run_ids[:-1]), run_ids[-1], success,
                            session.status if session else "", session.status_reason if session else None)
