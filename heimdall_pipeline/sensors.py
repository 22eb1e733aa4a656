"""session_request_sensor: turns stored session requests into partitions and one run each, and
reconciles the status of sessions whose runs have ended. session_analysis_sensor: one analysis
run (session_summary + session_localization) per session whose capture run ended."""

import json
from datetime import datetime, timedelta, timezone

from dagster import (
    MAX_RUNTIME_SECONDS_TAG, AssetKey, DagsterEventType, DagsterRunStatus, DefaultSensorStatus, RunRequest,
    RunsFilter, SensorEvaluationContext, SensorResult, sensor,
)

from heimdall_pipeline.assets.sessions import launch_runs
from heimdall_pipeline.jobs import session_analysis_job, session_job
from heimdall_pipeline.partitions import add_session_partitions, capture_partitions, split_capture_key
from heimdall_pipeline.recordings import bucket
from heimdall_pipeline.recordings.plan import RecordingImportError
from heimdall_pipeline.resources import HeimdallDatabase
from heimdall_pipeline.resources.iq_store import IQStore
from heimdall_pipeline.run_workers import WORKER_TAG, worker_gone
from heimdall_pipeline.storage.layout import INCOMING_ROOT
from heimdall_pipeline.tags import (
    ANALYSIS_OF_TAG, ANALYSIS_TAG, ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG, LAUNCH_TAG,
    PARTITION_NAME_TAG, SESSION_TAG,
)

MAX_SESSIONS_PER_TICK = 100
# Ids are handed out when a request's transaction starts, so one that commits late can appear
# below the cursor's id: every tick looks again at what was requested or came due this long
# before the previous tick (seen ones again too; their run keys make Dagster skip them).
LATE_COMMIT_GRACE = timedelta(minutes=1)
# A session scheduled for a moment (`--at`) is launched this long before it, so that its run is
# started, connected and tuned when the moment comes (sources/dispatch.session_start: every live receiver stores
# samples from exactly the scheduled instant) instead of a tick and a run start-up after it.
LAUNCH_LEAD = timedelta(seconds=60)


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


def session_run_request(session, capture_range: tuple[str, str], launch_id: str,
                        extra_tags: dict[str, str] | None = None) -> RunRequest:
    """The one run that records a session: raw_iq → receiver_metrics over its capture partitions
    (first..last, contiguous: partitions.add_session_partitions), tagged with the session (one run
    per session at a time in the run queue: dagster.yaml) and the launch. Each receiver's channels
    are leases taken by the run itself (db/leases_repo.py)."""
    first, last = capture_range
    max_runtime = int(RUN_TIME_ALLOWANCE_S + RUN_TIME_PER_SESSION_SECOND * session.duration_s)
    return RunRequest(
        run_key=f"{session.session_key}:{first}..{last}",
        tags={
            ASSET_PARTITION_RANGE_START_TAG: first,
            ASSET_PARTITION_RANGE_END_TAG: last,
            SESSION_TAG: session.session_key,
            LAUNCH_TAG: launch_id,
            MAX_RUNTIME_SECONDS_TAG: str(max_runtime),
            **(extra_tags or {}),
        },
    )


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
        description="Launches each requested session once (its partitions, one per requested receiver, and "
                    "one run) and reconciles the status of sessions whose runs have ended.")
def session_request_sensor(context: SensorEvaluationContext, database: HeimdallDatabase) -> SensorResult:
    from heimdall_pipeline.db.sessions_repo import requested_sessions, transition  # the database layer (SQLAlchemy) loads with the first tick, not the code location

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
    pending = requested_sessions(engine, after_id=after_id, now=now + LAUNCH_LEAD, limit=MAX_SESSIONS_PER_TICK,
                                 since=None if last_tick is None else last_tick - LATE_COMMIT_GRACE)
    ranges, problems = add_session_partitions(context.instance, {s.session_key: s.receiver_ids for s in pending})
    for session_key, problem in problems.items():
        context.log.error(problem)
        transition(engine, session_key, "failed", reason=problem)
    runs = [session_run_request(session, ranges[session.session_key], sensor_launch_id(session.session_key))
            for session in pending if session.session_key in ranges]
    if pending:
        context.log.info(f"{len(pending)} session request(s): {', '.join(s.session_key for s in pending)}")
    # A tick cut short by the limit hands over the lowest ids; the rest have higher ids than the
    # cursor and come next tick.
    return SensorResult(run_requests=runs, cursor=write_cursor(max([after_id, *(s.id for s in pending)]), now))


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
    bucket.QUIET_PERIOD. The cursor keeps, per batch, the newest object time it has handled,
    so an unchanged refused batch is not read again; an imported batch is looked at until its
    uploads have moved (a batch gone from incoming/ leaves the cursor)."""
    from heimdall_pipeline.db.sessions_repo import get_session  # the database layer (SQLAlchemy) loads with the first tick
    from heimdall_pipeline.recordings.importer import import_batch

    engine = database.engine()
    handled = read_import_cursor(context.cursor)
    now = datetime.now(timezone.utc)
    cursor: dict[str, str] = {}
    for batch in bucket.incoming_batches(iq_store):
        objects = bucket.batch_objects(iq_store, INCOMING_ROOT, batch)
        if not objects:
            continue
        newest = max(o["LastModified"] for o in objects).isoformat()
        state = handled.get(batch, "")
        names = {o["Key"].rsplit("/", 1)[-1] for o in objects}
        if state == f"refused:{newest}" or bucket.ERRORS_FILE in names:
            cursor[batch] = f"refused:{newest}"
            continue
        session = get_session(engine, batch)
        if session is not None and (session.recordings or {}).get("batch") == batch:
            if bucket.finish_batch(iq_store, session):
                context.log.info(f"batch {batch}: captures verified, uploads moved to imported/{batch}/")
            else:
                cursor[batch] = f"imported:{newest}"
            continue
        if not bucket.batch_is_complete(objects, now):
            continue
        try:
            session = import_batch(engine, iq_store, batch, requested_by="recording_import_sensor")
        except RecordingImportError as exc:
            context.log.warning(str(exc))
            bucket.report_errors(iq_store, exc)
            cursor[batch] = f"refused:{newest}"
            continue
        context.log.info(f"batch {batch}: session {session.session_key} requested with "
                         f"{len(session.receiver_ids)} recording(s)")
        cursor[batch] = f"imported:{newest}"
    return SensorResult(cursor=json.dumps(cursor, sort_keys=True))


# What the analysis sensor reads per tick, and how far back its first tick looks (runs that ended
# while no daemon ran); a repeated look is harmless: the run key makes Dagster skip a seen request.
MAX_ANALYSED_RUNS_PER_TICK = 100
ANALYSIS_FIRST_LOOKBACK = timedelta(hours=1)
ANALYSIS_OVERLAP = timedelta(minutes=1)
CAPTURE_ASSETS = (AssetKey("raw_iq"), AssetKey("receiver_metrics"))


def run_sessions(run, ordered_captures) -> list[str]:
    """The sessions whose captures a run recorded or measured: its session tag, else its single
    partition, else the sessions of its partition range (`ordered_captures()`: the capture keys in
    partition order, read only for a range over several sessions)."""
    if SESSION_TAG in run.tags:
        return [run.tags[SESSION_TAG]]
    if PARTITION_NAME_TAG in run.tags:
        return [split_capture_key(run.tags[PARTITION_NAME_TAG])[0]]
    start, end = run.tags.get(ASSET_PARTITION_RANGE_START_TAG), run.tags.get(ASSET_PARTITION_RANGE_END_TAG)
    if not start or not end:
        return []
    first, last = split_capture_key(start)[0], split_capture_key(end)[0]
    if first == last:
        return [first]
    keys = ordered_captures()
    if start not in keys or end not in keys:
        return [first, last]
    return list(dict.fromkeys(split_capture_key(key)[0] for key in keys[keys.index(start):keys.index(end) + 1]))


def needs_analysis(run) -> bool:
    """A run that recorded or measured captures and left the analysis to this sensor: a capture run
    (session_job) whose launcher does not analyse it itself, or an asset run of raw_iq /
    receiver_metrics (UI, backfill) that did not include the analysis."""
    if run.tags.get(ANALYSIS_TAG) == "inline":
        return False
    if run.job_name == session_job.name:
        return True
    selection = set(run.asset_selection or ())
    return bool(selection.intersection(CAPTURE_ASSETS)) and AssetKey("session_summary") not in selection


def read_analysis_cursor(cursor: str | None, now: datetime) -> tuple[datetime, bool]:
    """(update time of the newest run handled, whether that tick read a full page of runs)."""
    if not cursor:
        return now - ANALYSIS_FIRST_LOOKBACK, False
    state = json.loads(cursor)
    return datetime.fromisoformat(state["since"]), bool(state["full"])


@sensor(job=session_analysis_job, minimum_interval_seconds=15, default_status=DefaultSensorStatus.RUNNING,
        description="After each capture run ends (whoever launched it: this daemon's sensors and schedules, the "
                    "launchpad, a backfill), launches one run of session_summary + session_localization per "
                    "session it recorded.")
def session_analysis_sensor(context: SensorEvaluationContext) -> SensorResult:
    now = datetime.now(timezone.utc)
    since, full = read_analysis_cursor(context.cursor, now)
    # Looking back a little catches a run whose update committed late; after a full page it would
    # read the same page again, so the next page starts right after it.
    records = context.instance.get_run_records(
        RunsFilter(statuses=[DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE],
                   updated_after=since if full else since - ANALYSIS_OVERLAP),
        limit=MAX_ANALYSED_RUNS_PER_TICK, order_by="update_timestamp", ascending=True)
    ordered: list[str] | None = None

    def ordered_captures() -> list[str]:
        nonlocal ordered
        if ordered is None:
            ordered = list(context.instance.get_dynamic_partitions(capture_partitions.name))
        return ordered

    requests = []
    for record in records:
        run = record.dagster_run
        if not needs_analysis(run):
            continue
        for session_key in run_sessions(run, ordered_captures):
            requests.append(RunRequest(run_key=f"analysis:{run.run_id}:{session_key}", partition_key=session_key,
                                       tags={SESSION_TAG: session_key, ANALYSIS_OF_TAG: run.run_id}))
    newest = max((record.update_timestamp for record in records), default=None)
    cursor = max(since, newest.astimezone(timezone.utc)) if newest is not None else since
    return SensorResult(run_requests=requests, cursor=json.dumps(
        {"since": cursor.isoformat(), "full": len(records) >= MAX_ANALYSED_RUNS_PER_TICK}))
