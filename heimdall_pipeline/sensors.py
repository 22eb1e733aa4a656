"""session_request_sensor: turns stored session requests into partitions and one run each."""

import json
from datetime import datetime, timedelta, timezone

from dagster import (
    AssetSelection, AutomationConditionSensorDefinition, DefaultSensorStatus, RunRequest, SensorEvaluationContext,
    SensorResult, sensor,
)
# Dagster 1.13 exports no public way to target a partition range from a RunRequest (these two tags
# are what its UI and backfills set; RunRequest.partition_key takes one key only).
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from heimdall_pipeline.jobs import session_job
from heimdall_pipeline.partitions import partition_key_for, receiver_partitions, session_partitions
from heimdall_pipeline.resources import HeimdallDatabase
from heimdall_pipeline.resources.iq_store import IQStore

MAX_SESSIONS_PER_TICK = 100
# Ids are handed out when a request's transaction starts, so one that commits late can appear
# below the cursor's id: every tick looks again at what was requested or came due this long
# before the previous tick (seen ones again too; their run keys make Dagster skip them).
LATE_COMMIT_GRACE = timedelta(minutes=1)
RECEIVER_TAG_PREFIX = "heimdall/receiver."


def session_run_request(session_key: str, receiver_ids, receiver_keys: list[str]) -> RunRequest:
    """One run per session over all receiver partitions (receivers not requested are recorded
    as such), tagged with every receiver it records so the run queue's per-receiver channel
    limits hold across runs."""
    return RunRequest(
        run_key=session_key,
        tags={
            ASSET_PARTITION_RANGE_START_TAG: str(partition_key_for(session_key, receiver_keys[0])),
            ASSET_PARTITION_RANGE_END_TAG: str(partition_key_for(session_key, receiver_keys[-1])),
            "heimdall/session": session_key,
            **{f"{RECEIVER_TAG_PREFIX}{rid}": "1" for rid in receiver_ids},
        },
    )


def read_cursor(cursor: str | None) -> tuple[int, datetime | None]:
    """(highest session id handed over, time of the tick that did it); (0, None) for a new sensor."""
    if not cursor:
        return 0, None
    state = json.loads(cursor)
    return int(state["after_id"]), datetime.fromisoformat(state["tick"])


def write_cursor(after_id: int, tick: datetime) -> str:
    return json.dumps({"after_id": after_id, "tick": tick.isoformat()})


@sensor(job=session_job, minimum_interval_seconds=15, default_status=DefaultSensorStatus.RUNNING,
        description="Launches each requested session once: adds its partition and one run for all receivers.")
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
    runs = [session_run_request(session.session_key, session.receiver_ids, receiver_keys) for session in pending]
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
