"""Running a requested session through Dagster in this process (`heimdall main`, `heimdall
session run`, the benchmark).

It does what the sensor and the daemon do — add the partitions, one run for raw_iq →
receiver_metrics per contiguous block of the session's receivers, then the session analysis
(summary, localization) — with the code location's definitions, recorded in the given persistent instance
so the UI shows the runs afterwards. The runs go through ``execute_job``, the API a run worker
uses: each step's output is released once its IO manager has stored it (``execute_in_process``,
Dagster's testing API, keeps every output until the run ends; the tests use it through
``session_runs``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from dagster import DagsterInstance, JobDefinition, build_reconstructable_job, execute_job

from heimdall_pipeline.db.receivers_repo import list_receivers
from heimdall_pipeline.db.sessions_repo import InvalidTransitionError, claim_launch, get_session, transition
from heimdall_pipeline.definitions import defs
from heimdall_pipeline.partitions import receiver_partitions, session_partitions
from heimdall_pipeline.sensors import reconcile_sessions, sensor_launch_id, session_run_requests
from heimdall_pipeline.tags import PARTITION_NAME_TAG


@dataclass(frozen=True)
class SessionRunResult:
    session_key: str
    session_run_ids: tuple[str, ...]  # one per contiguous block of the session's receivers
    analysis_run_id: str
    success: bool  # every run succeeded (Dagster's view)
    status: str = ""  # the session's status afterwards: what a caller reports
    status_reason: str | None = None

    @property
    def session_run_id(self) -> str:
        return self.session_run_ids[0]


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


def session_runs(instance: DagsterInstance, engine, session_key: str,
                 launch_id: str | None = None) -> list[tuple[str, dict[str, str]]]:
    """The runs that record a session, in order, as (job name, run tags): raw_iq → receiver_metrics
    per block of its receivers (the sensor's run requests), then the session analysis. Adds the
    partitions. launch_id: the launch the runs belong to (default: the sensor's)."""
    session = get_session(engine, session_key)
    if session is None:
        raise ValueError(f"session {session_key!r} is not in the sessions table")
    receiver_keys = ensure_partitions(instance, [session_key], [r.id for r in list_receivers(engine)])
    requests = session_run_requests(session, receiver_keys, launch_id or sensor_launch_id(session_key))
    return ([("session_job", dict(request.tags)) for request in requests]
            + [("session_analysis_job", {PARTITION_NAME_TAG: session_key})])


def location_job(job_name: str) -> JobDefinition:
    """A job of the code location, rebuilt from its module (what execute_job reconstructs)."""
    return defs.resolve_job_def(job_name)


def run_session(instance: DagsterInstance, engine, session_key: str) -> SessionRunResult:
    """Claims the session (SessionAlreadyLaunchedError, before anything runs, if another launch
    holds it), runs it, and reconciles its status with how the runs ended."""
    if not instance.is_persistent:
        raise ValueError("run_session needs a persistent Dagster instance (DAGSTER_HOME); "
                         "tests run the jobs with execute_in_process over session_runs instead")
    launch_id = f"cli:{uuid.uuid4().hex}"
    runs = session_runs(instance, engine, session_key, launch_id)
    claim_launch(engine, session_key, launch_id)
    run_ids, success = [], True
    try:
        for job_name, tags in runs:
            job = build_reconstructable_job(__name__, location_job.__name__, reconstructable_args=(job_name,))
            with execute_job(job, instance, tags=tags) as result:
                run_ids.append(result.run_id)
                success = success and result.success
    finally:
        reconcile_sessions(instance, engine)
        if not run_ids:  # nothing started: the claim must not keep the session launched
            try:
                transition(engine, session_key, "failed", reason="`heimdall session run` ended before its "
                           "first run started", if_run_id=launch_id)
            except InvalidTransitionError:
                pass
    session = get_session(engine, session_key)
    return SessionRunResult(session_key, tuple(run_ids[:-1]), run_ids[-1], success, session.status,
                            session.status_reason)
