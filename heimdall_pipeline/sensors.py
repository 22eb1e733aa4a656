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


# session_summary follows its receivers' metrics by its eager automation condition.
session_automation_sensor = AutomationConditionSensorDefinition(
    "session_automation_sensor",
    target=AssetSelection.groups("heimdall"),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
