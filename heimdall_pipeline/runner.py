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

from heimdall_pipeline.assets.sessions import launch_runs
from heimdall_pipeline.db.sessions_repo import InvalidTransitionError, claim_launch, get_session, transition
from heimdall_pipeline.definitions import defs
from heimdall_pipeline.outages import outage_message
from heimdall_pipeline.partitions import PartitionOrderError, add_session_partitions
from heimdall_pipeline.run_workers import WORKER_TAG, current_worker
from heimdall_pipeline.sensors import reconcile_sessions, sensor_launch_id, session_run_request
from heimdall_pipeline.tags import ANALYSIS_OF_TAG, ANALYSIS_TAG, PARTITION_NAME_TAG, SESSION_TAG


# The runs' event logs stay in the instance (the UI shows them); the console gets only what the
# command prints itself: the session's status, or one line naming a service that went down.
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


class RunOutageError(RuntimeError):
    """A service was lost under one of the session's runs (the message says which and why): the
    session is failed with it and no further run is started."""


@dataclass(frozen=True)
class SessionRunResult:
    session_key: str
    session_run_ids: tuple[str, ...]  # the session's capture run (one per session)
    analysis_run_id: str
    success: bool  # every run succeeded (Dagster's view)
    status: str = ""  # the session's status afterwards: what a caller reports
    status_reason: str | None = None
    outage: str | None = None  # a failed run's error was a service outage: which service, and why

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
    return defs.resolve_job_def(job_name)


def runs_outage(instance: DagsterInstance, run_ids) -> str | None:
    """The outage (service and reason, outages.py) that failed one of these runs, if one did."""
    from dagster import DagsterEventType

    for run_id in run_ids:
        for record in instance.all_logs(run_id, of_type={DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE}):
            error = getattr(record.dagster_event.event_specific_data, "error", None)
            message = outage_message(error) if error is not None else None
            if message:
                return message
    return None


def _fail_launch(engine, session_key: str, launch_id: str, reason: str) -> bool:
    """Fails the session of this launch with the reason if the launch still holds it; False when
    the database does not answer (the reconciler heals it later: its runs name their worker)."""
    import sqlalchemy as sa

    try:
        transition(engine, session_key, "failed", reason=reason, if_run_id=launch_id)
    except InvalidTransitionError:  # moved meanwhile: that status stands
        pass
    except sa.exc.DBAPIError:
        return False
    return True


def run_session(instance: DagsterInstance, engine, session_key: str) -> SessionRunResult:
    """Reconciles first (a session whose runs have all ended is marked from what is stored, so it
    can be run again when allowed), claims the session (SessionAlreadyLaunchedError, before
    anything runs, if another launch holds it), runs it, and reconciles its status with how the
    runs ended. A service outage that stops a run is raised after the session is failed with it
    (or left to the reconciler when the database itself is gone)."""
    if not instance.is_persistent:
        raise ValueError("run_session needs a persistent Dagster instance (DAGSTER_HOME); "
                         "tests run the jobs with execute_in_process over session_runs instead")
    reconcile_sessions(instance, engine)
    launch_id = f"cli:{uuid.uuid4().hex}"
    started = datetime.now(timezone.utc)
    runs = session_runs(instance, engine, session_key, launch_id)
    claim_launch(engine, session_key, launch_id)
    worker = {WORKER_TAG: current_worker()}  # this process executes the runs: if it dies, they are failed
    run_ids, success, database_lost = [], True, False
    try:
        for job_name, tags in runs:
            job = build_reconstructable_job(__name__, location_job.__name__, reconstructable_args=(job_name,))
            if run_ids:  # the analysis names the capture run it follows
                tags = {**tags, ANALYSIS_OF_TAG: run_ids[0]}
            # Not `with execute_job(...)`: that context starts the run's resources once more, only
            # to read outputs back (~35 ms and a bucket check per run).
            result = execute_job(job, instance, tags={**tags, **worker}, run_config=QUIET_CONSOLE)
            run_ids.append(result.run_id)
            success = success and result.success
            outage = None if result.success else runs_outage(instance, [result.run_id])
            if outage is not None:  # a service was lost under this run: the next one would meet it too
                raise RunOutageError(outage)
    except Exception as exc:
        outage = str(exc) if isinstance(exc, RunOutageError) else outage_message(exc)
        if outage is None:
            raise
        database_lost = not _fail_launch(engine, session_key, launch_id, outage)
        raise
    finally:
        # With the database gone there is nothing to reconcile with: the error is said at once, and
        # the reconciler heals the session once the database is back.
        if not database_lost:
            try:
                # the runs of this call only (the sensor looks at the whole history)
                reconcile_sessions(instance, engine, since=started - timedelta(minutes=1))
                if not launch_runs(instance, launch_id):  # nothing started: the claim must not keep it launched
                    _fail_launch(engine, session_key, launch_id,
                                 "`heimdall session run` ended before its first run started")
            except Exception:  # noqa: BLE001 - a service is down: the error that stopped the runs is what to report
                pass
    session = get_session(engine, session_key)
    return SessionRunResult(session_key, tuple(run_ids[:-1]), run_ids[-1], success, session.status,
                            session.status_reason, None if success else runs_outage(instance, run_ids))
