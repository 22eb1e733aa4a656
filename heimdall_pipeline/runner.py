"""Running a requested session through Dagster in this process (CLI main job, tests, benchmark).

It does what the sensor and the daemon do — add the partitions, one run for raw_iq →
receiver_metrics over all receivers of the session, then the session analysis (summary, localization) — with the same
definitions, recorded in the given instance so the UI shows the runs afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from dagster import DagsterInstance, Definitions
from dagster._core.storage.tags import PARTITION_NAME_TAG

from heimdall_pipeline.db.receivers_repo import list_receivers
from heimdall_pipeline.db.sessions_repo import get_session
from heimdall_pipeline.partitions import receiver_partitions, session_partitions
from heimdall_pipeline.sensors import session_run_request


@dataclass(frozen=True)
class SessionRunResult:
    session_key: str
    session_run_id: str
    analysis_run_id: str
    success: bool


def ensure_partitions(instance: DagsterInstance, session_keys: list[str], receiver_ids: list[str]) -> list[str]:
    """Adds missing session and receiver partitions; returns the receiver keys in partition order."""
    known = instance.get_dynamic_partitions(receiver_partitions.name)
    missing = [rid for rid in receiver_ids if rid not in known]
    if missing:
        instance.add_dynamic_partitions(receiver_partitions.name, missing)
    known_sessions = set(instance.get_dynamic_partitions(session_partitions.name))
    new_sessions = [key for key in session_keys if key not in known_sessions]
    if new_sessions:
        instance.add_dynamic_partitions(session_partitions.name, new_sessions)
    return list(known) + missing


def session_runs(instance: DagsterInstance, engine, session_key: str) -> list[tuple[str, dict[str, str]]]:
    """The runs that record a session, in order, as (job name, run tags): raw_iq → receiver_metrics
    over all receivers (the sensor's run request), then the session analysis. Adds the partitions."""
    record = get_session(engine, session_key)
    if record is None:
        raise ValueError(f"session {session_key!r} is not in the sessions table")
    receiver_keys = ensure_partitions(instance, [session_key], [r.id for r in list_receivers(engine)])
    request = session_run_request(session_key, record.receiver_ids, receiver_keys)
    return [("session_job", dict(request.tags)), ("session_analysis_job", {PARTITION_NAME_TAG: session_key})]


def run_session(defs: Definitions, instance: DagsterInstance, engine, session_key: str) -> SessionRunResult:
    run_ids, success = [], True
    for job_name, tags in session_runs(instance, engine, session_key):
        result = defs.resolve_job_def(job_name).execute_in_process(instance=instance, tags=tags, raise_on_error=False)
        run_ids.append(result.run_id)
        success = success and result.success
    return SessionRunResult(session_key, run_ids[0], run_ids[1], success)
