"""Running a requested session through Dagster in this process (`heimdall main`, `heimdall
session run`, the benchmark).

It does what the sensors and the daemon do — add the partitions, one run of raw_iq →
receiver_metrics over the session's captures, then the session analysis (summary, localization;
the capture run is tagged so the analysis sensor leaves it) — with the code location's definitions, recorded in the given persistent instance
so the UI shows the runs afterwards. The runs go through ``execute_job``, the API a run worker
uses: each step's output is released once its IO manager has stored it (``execute_in_process``,
Dagster's testing API, keeps every output until the run ends; the tests use it through
``session_runs``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from dagster import DagsterInstance, JobDefinition, build_reconstructable_job, execute_job
# The run tag of a partition ("dagster/partition"): Dagster exports no public constant or
# function for it (RunRequest(partition_key=...) resolves it only inside a sensor or schedule).
from dagster._core.storage.tags import PARTITION_NAME_TAG

from heimdall_pipeline.db.sessions_repo import InvalidTransitionError, claim_launch, get_session, transition
from heimdall_pipeline.partitions import SESSION_TAG, PartitionOrderError, add_session_partitions
from heimdall_pipeline.sensors import (
    ANALYSIS_OF_TAG, ANALYSIS_TAG, reconcile_sessions, sensor_launch_id, session_run_request,
)


@dataclass(frozen=True)
class SessionRunResult:
    session_key: str
    session_run_ids: tuple[str, ...]  # the session's capture run (one per session)
    analysis_run_id: str
    success: bool  # every run succeeded (Dagster's view)
    status: str = ""  # the session's status afterwards: what a caller reports
    status_reason: str | None = None

    @property
    def session_run_id(self) -> str:
        return self.session_run_ids[0]


def session_runs(instance: DagsterInstance, engine, session_key: str,
                 launch_id: str | None = None) -> list[tuple[str, dict[str, str]]]:
    """The runs of a session, in order, as (job name, run tags): raw_iq → receiver_metrics over its
    captures (the sensor's run request, tagged as analysed by its launcher), then the session
    analysis. Adds the partitions. launch_id: the launch the runs belong to (default: the sensor's)."""
    session = get_session(engine, session_key)
    if session is None:
        raise ValueError(f"session {session_key!r} is not in the sessions table")
    ranges, problems = add_session_partitions(instance, {session_key: session.receiver_ids})
    if problems:
        raise PartitionOrderError(problems[session_key])
    request = session_run_request(session, ranges[session_key], launch_id or sensor_launch_id(session_key),
                                  extra_tags={ANALYSIS_TAG: "inline"})
    return [("session_job", dict(request.tags)),
            ("session_analysis_job", {PARTITION_NAME_TAG: session_key, SESSION_TAG: session_key})]


def location_job(job_name: str) -> JobDefinition:
    """A job of the code location, rebuilt from its module (what execute_job reconstructs)."""
    from heimdall_pipeline.definitions import defs

    return defs.resolve_job_def(job_name)


def run_session(instance: DagsterInstance, engine, session_key: str) -> SessionRunResult:
    """Claims the session (SessionAlreadyLaunchedError, before anything runs, if another launch
    holds it), runs it, and reconciles its status with how the runs ended."""
    if not instance.is_persistent:
        raise ValueError("run_session needs a persistent Dagster instance (DAGSTER_HOME); "
                         "tests run the jobs with execute_in_process over session_runs instead")
    # Dagster's PostgreSQL storages open a connection per storage call (~470 for one 7-receiver
    # session, each a TLS-less but SCRAM-authenticated connect): hold a small pool for these runs,
    # as dagster-webserver does (a no-op for other storages).
    instance.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=4)
    launch_id = f"cli:{uuid.uuid4().hex}"
    started = datetime.now(timezone.utc)
    runs = session_runs(instance, engine, session_key, launch_id)
    claim_launch(engine, session_key, launch_id)
    run_ids, success = [], True
    try:
        for job_name, tags in runs:
            job = build_reconstructable_job(__name__, location_job.__name__, reconstructable_args=(job_name,))
            if run_ids:  # the analysis names the capture run it follows
                tags = {**tags, ANALYSIS_OF_TAG: run_ids[0]}
            with execute_job(job, instance, tags=tags) as result:
                run_ids.append(result.run_id)
                success = success and result.success
    finally:
        # the failed runs of this call only (the sensor looks at the whole history)
        reconcile_sessions(instance, engine, since=started - timedelta(minutes=1))
        if not run_ids:  # nothing started: the claim must not keep the session launched
            try:
                transition(engine, session_key, "failed", reason="`heimdall session run` ended before its "
                           "first run started", if_run_id=launch_id)
            except InvalidTransitionError:
                pass
    session = get_session(engine, session_key)
    return SessionRunResult(session_key, tuple(run_ids[:-1]), run_ids[-1], success, session.status,
                            session.status_reason)
