"""Running a requested session through Dagster in this process (`heimdall main`, `heimdall
session run`, the benchmark).

It does what the sensor and the daemon do — add the partitions, one run for raw_iq →
receiver_metrics over all receivers of the session, then the session analysis (summary,
localization) — with the code location's definitions, recorded in the given persistent instance
so the UI shows the runs afterwards. The runs go through ``execute_job``, the API a run worker
uses: each step's output is released once its IO manager has stored it (``execute_in_process``,
Dagster's testing API, keeps every output until the run ends; the tests use it through
``session_runs``).
"""

from __future__ import annotations

from dataclasses import dataclass

from dagster import DagsterInstance, JobDefinition, build_reconstructable_job, execute_job
# The run tag of a partition ("dagster/partition"): Dagster exports no public constant or
# function for it (RunRequest(partition_key=...) resolves it only inside a sensor or schedule).
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
    session = get_session(engine, session_key)
    if session is None:
        raise ValueError(f"session {session_key!r} is not in the sessions table")
    receiver_keys = ensure_partitions(instance, [session_key], [r.id for r in list_receivers(engine)])
    request = session_run_request(session_key, session.receiver_ids, receiver_keys)
    return [("session_job", dict(request.tags)), ("session_analysis_job", {PARTITION_NAME_TAG: session_key})]


def location_job(job_name: str) -> JobDefinition:
    """A job of the code location, rebuilt from its module (what execute_job reconstructs)."""
    from heimdall_pipeline.definitions import defs

    return defs.resolve_job_def(job_name)


def run_session(instance: DagsterInstance, engine, session_key: str) -> SessionRunResult:
    if not instance.is_persistent:
        raise ValueError("run_session needs a persistent Dagster instance (DAGSTER_HOME); "
                         "tests run the jobs with execute_in_process over session_runs instead")
    run_ids, success = [], True
    for job_name, tags in session_runs(instance, engine, session_key):
        job = build_reconstructable_job(__name__, location_job.__name__, reconstructable_args=(job_name,))
        with execute_job(job, instance, tags=tags) as result:
            run_ids.append(result.run_id)
            success = success and result.success
    return SessionRunResult(session_key, run_ids[0], run_ids[1], success)
