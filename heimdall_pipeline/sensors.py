"""session_request_sensor: turns stored session requests into partitions and runs, and reconciles
the status of sessions whose runs have ended."""

import json
from datetime import datetime, timedelta, timezone

from dagster import (
    MAX_RUNTIME_SECONDS_TAG, AssetSelection, AutomationConditionSensorDefinition, DagsterEventType, DagsterRunStatus,
    DefaultSensorStatus, RunRequest, RunsFilter, SensorEvaluationContext, SensorResult, sensor,
)
# Dagster 1.13 exports no public way to target a partition range from a RunRequest (these two tags
# are what its UI and backfills set; RunRequest.partition_key takes one key only).
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from heimdall_pipeline.assets.sessions import launch_runs
from heimdall_pipeline.jobs import session_job
from heimdall_pipeline.partitions import (
    LAUNCH_TAG, SESSION_TAG, partition_key_for, receiver_blocks, receiver_partitions, session_partitions,
)
from heimdall_pipeline.resources import HeimdallDatabase
from heimdall_pipeline.resources.iq_store import IQStore
from heimdall_pipeline.run_workers import WORKER_TAG, worker_gone

MAX_SESSIONS_PER_TICK = 100
# Ids are handed out when a request's transaction starts, so one that commits late can appear
# below the cursor's id: every tick looks again at what was requested or came due this long
# before the previous tick (seen ones again too; their run keys make Dagster skip them).
LATE_COMMIT_GRACE = timedelta(minutes=1)
RECEIVER_TAG_PREFIX = "heimdall/receiver."


# A session run may take its recording time, each receiver's timeouts and retries, and its
# metrics; past this, run monitoring cancels it (a worker that died leaves its run STARTED
# otherwise: the default run launcher cannot check a worker's health) and the reconciler below
# marks the session failed.
RUN_TIME_ALLOWANCE_S = 900
RUN_TIME_PER_SESSION_SECOND = 4
# A launch whose runs never appeared (its process died between claiming the session and
# submitting them) is failed after this long.
LAUNCH_GRACE = timedelta(minutes=10)
MAX_RECONCILED_RUNS = 1000


def sensor_launch_id(session_key: str) -> str:
    """The sensor's launch of a session: the same on every tick, so a retried tick's runs join it."""
    return f"sensor:{session_key}"


def session_run_requests(session, receiver_keys: list[str], launch_id: str) -> list[RunRequest]:
    """The runs that record a session: one per contiguous block of its receivers in partition
    order (a run targets one range; receivers it did not request are never in it), all tagged
    with the session and the launch, and each with the receivers it records so the run queue's
    per-receiver channel limits hold across runs."""
    max_runtime = int(RUN_TIME_ALLOWANCE_S + RUN_TIME_PER_SESSION_SECOND * session.duration_s)
    return [RunRequest(
        run_key=f"{session.session_key}:{first}..{last}",
        tags={
            ASSET_PARTITION_RANGE_START_TAG: str(partition_key_for(session.session_key, first)),
            ASSET_PARTITION_RANGE_END_TAG: str(partition_key_for(session.session_key, last)),
            SESSION_TAG: session.session_key,
            LAUNCH_TAG: launch_id,
            MAX_RUNTIME_SECONDS_TAG: str(max_runtime),
            **{f"{RECEIVER_TAG_PREFIX}{rid}": "1"
               for rid in receiver_keys[receiver_keys.index(first):receiver_keys.index(last) + 1]},
        },
    ) for first, last in receiver_blocks(receiver_keys, session.receiver_ids)]


def run_failure_reason(instance, run) -> str:
    """Why a run ended without success: its first step failure, else its run failure message."""
    events = instance.all_logs(run.run_id, of_type={DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE,
                                                    DagsterEventType.RUN_CANCELED})
    for record in events:
        event = record.dagster_event
        if event.is_step_failure and event.step_failure_data.error is not None:
            return f"run {run.run_id} {run.status.value}: {event.step_key}: {event.step_failure_data.error.message.strip()}"
    messages = [record.message or (record.dagster_event.message or "") for record in events]
    return f"run {run.run_id} {run.status.value}" + (f": {messages[-1]}" if messages and messages[-1] else "")


def fail_runs_of_dead_workers(instance) -> list[str]:
    """Fails every unfinished run whose worker processes on this host are all gone (its
    `heimdall/worker` tag, run_workers.py): such a run would otherwise stay STARTED until run
    monitoring's max runtime. Returns their run ids."""
    failed = []
    unfinished = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
    for run in instance.get_runs(RunsFilter(statuses=unfinished), limit=MAX_RECONCILED_RUNS):
        worker = run.tags.get(WORKER_TAG)
        if worker and worker_gone(worker):
            instance.report_run_failed(run, message=(
                f"its worker ({worker}) is gone: the process ended without finishing the run (killed, or "
                "it lost PostgreSQL or S3 mid-run); failed by the reconciler"))
            failed.append(run.run_id)
    return failed


def reconcile_sessions(instance, engine, *, since: datetime | None = None,
                       now: datetime | None = None) -> dict[str, str]:
    """Makes each session's status the truth once its runs have ended; returns {session: new status}.

    - runs whose worker is gone are failed first (fail_runs_of_dead_workers);
    - launched: when every run of its launch has ended — succeeded or failed from what is stored
      if they all succeeded (the summary may not have run), else failed with the run's reason; a
      launch without any run after LAUNCH_GRACE is failed;
    - requested: a session run that ended FAILURE/CANCELED before the session was claimed (e.g.
      a resource could not start) fails it with that run's reason. `since`: only runs updated
      after it (the sensor passes its previous tick).
    """
    from heimdall_pipeline.db.sessions_repo import (  # the database layer loads with the first tick
        InvalidTransitionError, finish_session, get_session, list_sessions, transition,
    )

    now = now or datetime.now(timezone.utc)
    changed: dict[str, str] = {}
    fail_runs_of_dead_workers(instance)

    def move(session_key: str, status: str | None, reason: str = "", launch_id: str | None = None) -> None:
        try:
            moved = (finish_session(engine, session_key, if_run_id=launch_id) if status is None
                     else transition(engine, session_key, status, reason=reason, if_run_id=launch_id))
        except InvalidTransitionError:
            return  # someone else moved it meanwhile: their status stands
        changed[session_key] = moved.status

    for session in list_sessions(engine, status="launched"):
        runs = launch_runs(instance, session.run_id)
        if not runs:
            if session.launched_at is not None and session.launched_at < now - LAUNCH_GRACE:
                move(session.session_key, "failed", f"launch {session.run_id} started no run within "
                     f"{LAUNCH_GRACE}", session.run_id)
            continue
        if not all(run.is_finished for run in runs):
            continue
        failed = [run for run in runs if run.status != DagsterRunStatus.SUCCESS]
        if failed:
            move(session.session_key, "failed", run_failure_reason(instance, failed[0]), session.run_id)
        else:
            move(session.session_key, None, launch_id=session.run_id)

    ended = instance.get_runs(RunsFilter(job_name=session_job.name, statuses=[DagsterRunStatus.FAILURE,
                                                                              DagsterRunStatus.CANCELED],
                                         updated_after=since), limit=MAX_RECONCILED_RUNS)
    for run in ended:
        key = run.tags.get(SESSION_TAG)
        session = get_session(engine, key) if key else None
        if session is not None and session.status == "requested":
            move(key, "failed", run_failure_reason(instance, run))
    return changed


def read_cursor(cursor: str | None) -> tuple[int, datetime | None]:
    """(highest session id handed over, time of the tick that did it); (0, None) for a new sensor."""
    if not cursor:
        return 0, None
    state = json.loads(cursor)
    return int(state["after_id"]), datetime.fromisoformat(state["tick"])


def write_cursor(after_id: int, tick: datetime) -> str:
    return json.dumps({"after_id": after_id, "tick": tick.isoformat()})


@sensor(job=session_job, minimum_interval_seconds=15, default_status=DefaultSensorStatus.RUNNING,
        description="Launches each requested session once (its partition and one run per block of its "
                    "receivers) and reconciles the status of sessions whose runs have ended.")
def session_request_sensor(context: SensorEvaluationContext, database: HeimdallDatabase) -> SensorResult:
    from heimdall_pipeline.db.receivers_repo import list_receivers  # the database layer (SQLAlchemy) loads with the first tick, not the code location
    from heimdall_pipeline.db.sessions_repo import requested_sessions

    engine = database.engine()
    # The cursor bounds the query to what is new since the last tick: sessions with a higher id,
    # and sessions requested or come due since (one requested earlier for a later time was not
    # due then). A tick interrupted before its cursor was saved asks again; the run key (the
    # session key) makes Dagster skip a request it has seen, so nothing is launched twice.
    after_id, last_tick = read_cursor(context.cursor)
    now = datetime.now(timezone.utc)
    # Statuses first: a request whose run already failed is no longer pending.
    reconciled = reconcile_sessions(context.instance, engine, now=now,
                                    since=None if last_tick is None else last_tick - LATE_COMMIT_GRACE)
    if reconciled:
        context.log.info("reconciled: " + ", ".join(f"{key} {status}" for key, status in reconciled.items()))
    pending = requested_sessions(engine, after_id=after_id, now=now, limit=MAX_SESSIONS_PER_TICK,
                                 since=None if last_tick is None else last_tick - LATE_COMMIT_GRACE)
    registered = [receiver.id for receiver in list_receivers(engine)]
    known = context.instance.get_dynamic_partitions(receiver_partitions.name)
    new_receivers = [rid for rid in registered if rid not in known]
    receiver_keys = list(known) + new_receivers
    known_sessions = set(context.instance.get_dynamic_partitions(session_partitions.name))
    new_sessions = [session.session_key for session in pending if session.session_key not in known_sessions]
    requests = []
    if new_receivers:
        requests.append(receiver_partitions.build_add_request(new_receivers))
    if new_sessions:
        requests.append(session_partitions.build_add_request(new_sessions))
    runs = [request for session in pending
            for request in session_run_requests(session, receiver_keys, sensor_launch_id(session.session_key))]
    if pending:
        context.log.info(f"{len(pending)} session request(s): {', '.join(s.session_key for s in pending)}")
    # A tick cut short by the limit hands over the lowest ids; the rest have higher ids than the
    # cursor and come next tick.
    return SensorResult(run_requests=runs, dynamic_partitions_requests=requests,
                        cursor=write_cursor(max([after_id, *(s.id for s in pending)]), now))


def read_import_cursor(cursor: str | None) -> dict[str, str]:
    """batch -> what the sensor last did with it ("imported:<newest object time>" / "refused:<time>")."""
    return json.loads(cursor) if cursor else {}


@sensor(minimum_interval_seconds=30, default_status=DefaultSensorStatus.RUNNING,
        description="Imports kiwirecorder WAV batches uploaded under incoming/<batch>/ as recording sessions "
                    "(the session_request_sensor launches them); moves a batch to imported/<batch>/ once its "
                    "captures are stored and verified.")
def recording_import_sensor(context: SensorEvaluationContext, database: HeimdallDatabase,
                            iq_store: IQStore) -> SensorResult:
    """A batch is complete when it holds `_complete` or nothing in it changed for
    recordings.QUIET_PERIOD. The cursor keeps, per batch, the newest object time it has handled,
    so an unchanged refused batch is not read again; an imported batch is looked at until its
    uploads have moved (a batch gone from incoming/ leaves the cursor)."""
    from heimdall_pipeline import recordings  # storage and database layers load with the first tick
    from heimdall_pipeline.db.sessions_repo import get_session

    engine = database.engine()
    handled = read_import_cursor(context.cursor)
    now = datetime.now(timezone.utc)
    cursor: dict[str, str] = {}
    for batch in recordings.incoming_batches(iq_store):
        objects = recordings.batch_objects(iq_store, recordings.INCOMING_ROOT, batch)
        if not objects:
            continue
        newest = max(o["LastModified"] for o in objects).isoformat()
        state = handled.get(batch, "")
        names = {o["Key"].rsplit("/", 1)[-1] for o in objects}
        if state == f"refused:{newest}" or recordings.ERRORS_FILE in names:
            cursor[batch] = f"refused:{newest}"
            continue
        session = get_session(engine, batch)
        if session is not None and (session.recordings or {}).get("batch") == batch:
            if recordings.finish_batch(iq_store, session):
                context.log.info(f"batch {batch}: captures verified, uploads moved to imported/{batch}/")
            else:
                cursor[batch] = f"imported:{newest}"
            continue
        if not recordings.batch_is_complete(objects, now):
            continue
        try:
            session = recordings.import_batch(engine, iq_store, batch, requested_by="recording_import_sensor")
        except recordings.RecordingImportError as exc:
            context.log.warning(str(exc))
            recordings.report_errors(iq_store, exc)
            cursor[batch] = f"refused:{newest}"
            continue
        context.log.info(f"batch {batch}: session {session.session_key} requested with "
                         f"{len(session.receiver_ids)} recording(s)")
        cursor[batch] = f"imported:{newest}"
    return SensorResult(cursor=json.dumps(cursor, sort_keys=True))


# session_summary follows its receivers' metrics by its eager automation condition.
session_automation_sensor = AutomationConditionSensorDefinition(
    "session_automation_sensor",
    target=AssetSelection.groups("heimdall"),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
