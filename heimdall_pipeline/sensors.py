"""session_request_sensor: turns stored session requests into partitions and one run each."""

from dagster import (
    AssetSelection, AutomationConditionSensorDefinition, DefaultSensorStatus, RunRequest, SensorEvaluationContext,
    SensorResult, sensor,
)
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from heimdall_pipeline.db.receivers_repo import list_receivers
from heimdall_pipeline.db.sessions_repo import requested_sessions
from heimdall_pipeline.jobs import session_job
from heimdall_pipeline.partitions import partition_key_for, receiver_partitions, session_partitions
from heimdall_pipeline.resources import HeimdallDatabase

MAX_SESSIONS_PER_TICK = 100
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


@sensor(job=session_job, minimum_interval_seconds=15, default_status=DefaultSensorStatus.RUNNING,
        description="Launches each requested session once: adds its partition and one run for all receivers.")
def session_request_sensor(context: SensorEvaluationContext, database: HeimdallDatabase) -> SensorResult:
    engine = database.engine()
    # The cursor is the highest session id already turned into a run request. Requests stay
    # 'requested' until their run starts, and the run key (the session key) makes Dagster skip
    # a request it has seen, so a tick interrupted before its cursor was saved launches nothing twice.
    last_id = int(context.cursor or 0)
    pending = requested_sessions(engine, after_id=0, limit=MAX_SESSIONS_PER_TICK)
    registered = [receiver.id for receiver in list_receivers(engine)]
    known = context.instance.get_dynamic_partitions(receiver_partitions.name)
    new_receivers = [rid for rid in registered if rid not in known]
    receiver_keys = list(known) + new_receivers
    known_sessions = set(context.instance.get_dynamic_partitions(session_partitions.name))
    new_sessions = [record.session_key for record in pending if record.session_key not in known_sessions]
    requests = []
    if new_receivers:
        requests.append(receiver_partitions.build_add_request(new_receivers))
    if new_sessions:
        requests.append(session_partitions.build_add_request(new_sessions))
    runs = [session_run_request(record.session_key, record.receiver_ids, receiver_keys) for record in pending]
    new_ids = [record.id for record in pending if record.id > last_id]
    if new_ids:
        context.log.info(f"{len(new_ids)} new session request(s): {', '.join(r.session_key for r in pending if r.id > last_id)}")
    return SensorResult(run_requests=runs, dynamic_partitions_requests=requests,
                        cursor=str(max([last_id, *new_ids])))


# session_summary follows its receivers' metrics by its eager automation condition.
session_automation_sensor = AutomationConditionSensorDefinition(
    "session_automation_sensor",
    target=AssetSelection.groups("heimdall"),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
