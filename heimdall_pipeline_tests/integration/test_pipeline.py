"""The asset graph against the real SeaweedFS and TimescaleDB on an ephemeral Dagster instance."""

import os
from datetime import datetime, timedelta, timezone

from dagster import AssetCheckKey, AssetKey, AssetRecordsFilter, build_sensor_context
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from heimdall_pipeline.db.measurements_repo import count_measurements, measurements_for_session
from heimdall_pipeline.db.receivers_repo import list_receivers
from heimdall_pipeline.db.sessions_repo import get_session
from heimdall_pipeline.partitions import add_session_partitions, capture_key
from heimdall_pipeline.runner import run_session
from heimdall_pipeline_tests.runs import run_session_in_process
from heimdall_pipeline.session_requests import request_session
from heimdall_pipeline.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from heimdall_pipeline.validation import default_receivers
from heimdall_pipeline.sensors import session_request_sensor
from heimdall_pipeline.storage.layout import iq_object_key, metadata_object_key, session_prefix


def bucket():
    return os.environ["HEIMDALL_S3_BUCKET"]


def object_keys(s3_client, session_key):
    listing = s3_client.list_objects_v2(Bucket=bucket(), Prefix=session_prefix(session_key))
    return sorted(item["Key"] for item in listing.get("Contents", []))


def check_results(result):
    return {evaluation.check_name: evaluation.passed for evaluation in result.get_asset_check_evaluations()}


def test_cli_runner_executes_a_session_like_a_run_worker(embedded_services, engine, session_key, s3_client):
    """runner.run_session (heimdall main / session run): execute_job on a persistent instance."""
    from dagster import DagsterInstance

    request_session(engine, requested_by="test", session_key=session_key, center_frequency_hz=7.1e6, duration_s=1)
    with DagsterInstance.local_temp() as instance:
        result = run_session(instance, engine, session_key)
        assert result.success
        # one capture run per session, whatever else is registered; its analysis is the CLI's own
        [session_run] = [instance.get_run_by_id(run_id) for run_id in result.session_run_ids]
        assert session_run.job_name == "session_job" and session_run.is_success
        assert session_run.tags["heimdall/session"] == session_key and session_run.tags["heimdall/analysis"] == "inline"
        analysis_run = instance.get_run_by_id(result.analysis_run_id)
        assert analysis_run.job_name == "session_analysis_job" and analysis_run.tags["dagster/partition"] == session_key
        assert analysis_run.tags["heimdall/analysis_of"] == session_run.run_id
        materialized = instance.fetch_materializations(AssetRecordsFilter(asset_key=AssetKey("raw_iq")), limit=100)
        stored = {r.partition_key for r in materialized.records
                  if r.asset_materialization.metadata["capture_status"].value == "stored"}
        # a session without a receiver list records the active receivers that take requests
        # (recording receivers, which only replay their uploads, join when named)
        assert stored == {capture_key(session_key, r.id)
                          for r in default_receivers(list_receivers(engine), "auto")}
    assert count_measurements(engine, session_key=session_key) == 7
    assert len([k for k in object_keys(s3_client, session_key) if k.endswith(".npy")]) == 7
    assert get_session(engine, session_key).status == "succeeded"


def test_cli_runner_refuses_an_ephemeral_instance(instance, engine, session_key):
    import pytest

    with pytest.raises(ValueError, match="persistent Dagster instance"):
        run_session(instance, engine, session_key)


def test_a_whole_session_lands_objects_rows_and_passing_checks(defs, instance, engine, session_key, s3_client):
    request_session(engine, requested_by="test", session_key=session_key, center_frequency_hz=7.1e6, duration_s=2)
    result = run_session_in_process(defs, instance, engine, session_key)
    assert result.success
    receivers = [r.id for r in default_receivers(list_receivers(engine), "auto")]
    assert len(receivers) == 7 and list(get_session(engine, session_key).receiver_ids) == receivers
    keys = object_keys(s3_client, session_key)
    assert [k for k in keys if k.endswith(".npy")] == sorted(iq_object_key(session_key, r) for r in receivers)
    assert [k for k in keys if k.endswith("_metadata.json")] == sorted(metadata_object_key(session_key, r) for r in receivers)
    assert count_measurements(engine, session_key=session_key) == 7
    assert get_session(engine, session_key).status == "succeeded"
    session_run = instance.get_run_by_id(result.session_run_id)
    assert session_run.is_success
    # Each partition's materialization says where its data is and shows its spectrum.
    event = instance.fetch_materializations(AssetRecordsFilter(
        asset_key=AssetKey("raw_iq"), asset_partitions=[capture_key(session_key, "hb9q")]), limit=1)
    metadata = event.records[0].asset_materialization.metadata
    assert metadata["receiver"].value == "hb9q"
    assert metadata["s3_key"].value.endswith(iq_object_key(session_key, "hb9q"))
    assert "![spectrum](" in metadata["spectrum"].value and len(metadata["sha256"].value) == 64
    # Every check of the run was evaluated and passed.
    for asset, check in (("raw_iq", "raw_iq_integrity"), ("raw_iq", "raw_iq_captured"),
                         ("raw_iq", "raw_iq_gnss_quality"), ("receiver_metrics", "receiver_metrics_rows")):
        history = instance.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(AssetKey(asset), check), limit=1)
        assert history and history[0].run_id in result.session_run_ids
        assert history[0].status == AssetCheckExecutionRecordStatus.SUCCEEDED, check
    # Re-materializing replaces rather than duplicating.
    assert run_session_in_process(defs, instance, engine, session_key).success
    assert count_measurements(engine, session_key=session_key) == 7
    rows = measurements_for_session(engine, session_key)
    assert all(row.signal_detected and abs(row.snr_db - row.metadata_json["ground_truth"]["snr_db"]) < 0.5
               for row in rows)


def test_receivers_not_requested_have_no_partition_and_no_row(defs, instance, engine, session_key, s3_client):
    from heimdall_pipeline.db.captures_repo import captures_of_receiver, outcomes_for_session

    request_session(engine, requested_by="test", session_key=session_key, center_frequency_hz=7.1e6,
                    duration_s=1, receiver_ids=["f5len", "hb9q"])
    result = run_session_in_process(defs, instance, engine, session_key)
    assert result.success
    assert {row.receiver_id for row in measurements_for_session(engine, session_key)} == {"f5len", "hb9q"}
    assert len([k for k in object_keys(s3_client, session_key) if k.endswith(".npy")]) == 2
    # partitions and rows only for the two requested receivers
    assert [k for k in instance.get_dynamic_partitions("captures") if k.startswith(f"{session_key}.")] == [
        capture_key(session_key, "f5len"), capture_key(session_key, "hb9q")]
    assert set(outcomes_for_session(engine, session_key)) == {"f5len", "hb9q"}
    # every capture of one receiver is one query on session_captures
    assert session_key in {o.session_key for o in captures_of_receiver(engine, "hb9q")}
    assert session_key not in {o.session_key for o in captures_of_receiver(engine, "ph0m")}


def test_session_checks_fail_on_a_corrupted_object(defs, instance, engine, session_key, s3_client):
    request_session(engine, requested_by="test", session_key=session_key, center_frequency_hz=7.1e6, duration_s=1)
    assert run_session_in_process(defs, instance, engine, session_key).success
    key = iq_object_key(session_key, "hb9q")
    data = bytearray(s3_client.get_object(Bucket=bucket(), Key=key)["Body"].read())
    data[-100] ^= 0xFF
    s3_client.put_object(Bucket=bucket(), Key=key, Body=bytes(data))
    [(first, last)] = add_session_partitions(instance, {session_key: get_session(engine, session_key).receiver_ids})[0].values()
    check_job = defs.resolve_implicit_global_asset_job_def()  # checks run with their asset in a selection
    result = defs.resolve_job_def("session_job").get_subset(
        asset_check_selection={check for check in check_job.asset_layer.asset_graph.asset_check_keys
                               if check.asset_key == AssetKey("raw_iq")},
        asset_selection=set(),
    ).execute_in_process(instance=instance, raise_on_error=False, tags={
        ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last})
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evaluations["raw_iq_integrity"].passed is False
    assert key in str(evaluations["raw_iq_integrity"].metadata["problems"].value)


def test_single_run_metrics_backfill_over_several_sessions(defs, instance, engine, s3_client):
    sessions = [f"tb{os.urandom(4).hex()}" for _ in range(3)]
    for key in sessions:
        request_session(engine, requested_by="test", session_key=key, center_frequency_hz=7.1e6, duration_s=1)
        assert run_session_in_process(defs, instance, engine, key).success
    # The three sessions' captures were added one session after another: one range, one run.
    order = instance.get_dynamic_partitions("captures")
    keys = [capture_key(s, r) for s in sessions for r in get_session(engine, s).receiver_ids]
    first, last = min(keys, key=order.index), max(keys, key=order.index)
    metrics_job = defs.resolve_job_def("session_job").get_subset(asset_selection={AssetKey("receiver_metrics")})
    result = metrics_job.execute_in_process(instance=instance, raise_on_error=False, tags={
        ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last})
    assert result.success
    materialized = {str(m.partition) for m in result.asset_materializations_for_node("receiver_metrics")}
    assert set(keys) == materialized
    assert all(count_measurements(engine, session_key=s) == 7 for s in sessions)


def test_sensor_cursor_bounds_its_query_and_launches_each_session_once(defs, instance, engine, monkeypatch):
    import time

    import sqlalchemy as sa

    from heimdall_pipeline import sensors
    from heimdall_pipeline.db.models import sessions

    monkeypatch.setattr(sensors, "LATE_COMMIT_GRACE", timedelta(0))
    resources = {"database": defs.resources["database"]}

    def tick(cursor):
        with build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
            return session_request_sensor(context)

    with engine.connect() as conn:
        seen = conn.execute(sa.select(sa.func.coalesce(sa.func.max(sessions.c.id), 0))).scalar()
    start = sensors.write_cursor(seen, datetime.now(timezone.utc))
    keys = [f"ts{os.urandom(4).hex()}" for _ in range(3)]
    for key in keys:
        request_session(engine, requested_by="test", session_key=key, center_frequency_hz=7.1e6, duration_s=1)
    # launched LAUNCH_LEAD before its time, so that its run is connected when the moment comes
    later, due = f"ts{os.urandom(4).hex()}", datetime.now(timezone.utc) + sensors.LAUNCH_LEAD + timedelta(seconds=2)
    request_session(engine, requested_by="test", session_key=later, center_frequency_hz=7.1e6, duration_s=1,
                    scheduled_for=due)

    def sessions_of(result):
        return {r.tags["heimdall/session"] for r in result.run_requests}

    first = tick(start)
    assert sessions_of(first) == set(keys)  # `later` is not within its launch lead yet
    # one run per session over exactly its capture partitions
    [request] = [r for r in first.run_requests if r.tags["heimdall/session"] == keys[0]]
    receivers = get_session(engine, keys[0]).receiver_ids
    assert (request.tags["dagster/asset_partition_range_start"], request.tags["dagster/asset_partition_range_end"]) == (
        capture_key(keys[0], receivers[0]), capture_key(keys[0], receivers[-1]))
    # A tick lost before its cursor was saved asks again for the same run keys, which Dagster
    # deduplicates: nothing twice, nothing lost.
    assert {r.run_key for r in tick(start).run_requests} == {r.run_key for r in first.run_requests}
    # The saved cursor bounds the query: what was handed over is not asked again ...
    assert tick(first.cursor).run_requests == []
    # ... but a session requested earlier for a later time is, once it is due.
    time.sleep(max(0.0, (due - sensors.LAUNCH_LEAD - datetime.now(timezone.utc)).total_seconds()) + 0.2)
    assert sessions_of(tick(first.cursor)) == {later}
    assert sensors.read_cursor(first.cursor)[0] == max(get_session(engine, k).id for k in keys)


def test_a_live_receiver_cannot_re_record_the_past(defs, instance, engine, session_key):
    from heimdall_pipeline.db.receivers_repo import add_receiver
    from heimdall_pipeline.receivers import Receiver

    live_id = f"kiwi{session_key[-6:]}"
    add_receiver(engine, Receiver(id=live_id, name="live", url="http://127.0.0.1:9", kind="kiwisdr",
                                  location_name="test", latitude=48.0, longitude=11.0, is_active=False))
    from heimdall_pipeline.db.receivers_repo import set_receiver_active
    set_receiver_active(engine, live_id, True)
    try:
        request_session(engine, requested_by="test", session_key=session_key, center_frequency_hz=7.1e6,
                        duration_s=1, receiver_ids=[live_id], scheduled_for=datetime.now(timezone.utc) - timedelta(days=1))
        result = run_session_in_process(defs, instance, engine, session_key)
        assert not result.success
        failure = instance.get_run_by_id(result.session_run_id)
        events = instance.all_logs(failure.run_id)
        messages = " ".join(str(e.dagster_event.event_specific_data) for e in events
                            if e.dagster_event and e.dagster_event.is_step_failure)
        assert "backfill receiver_metrics" in messages
    finally:
        set_receiver_active(engine, live_id, False)


def test_a_session_is_localized_with_an_honest_ellipse(defs, instance, engine, session_key):
    from heimdall_pipeline.db.measurements_repo import get_localization
    from heimdall_pipeline.propagation import haversine_km

    request = request_session(engine, requested_by="test", session_key=session_key, center_frequency_hz=7.1e6,
                              duration_s=1)
    assert run_session_in_process(defs, instance, engine, session_key).success
    located = get_localization(engine, session_key)
    truth = request.transmitter
    assert located.localizable and len(located.receivers_used) >= 3
    error_km = float(haversine_km(located.latitude, located.longitude, truth["latitude"], truth["longitude"]))
    # No shadowing in the default simulation: the estimate is close and inside its ellipse.
    assert error_km < 5.0, error_km
    assert error_km <= located.ellipse_semi_major_km


def test_fewer_than_three_receivers_is_not_localizable(defs, instance, engine, session_key):
    from heimdall_pipeline.db.measurements_repo import get_localization

    request_session(engine, requested_by="test", session_key=session_key, center_frequency_hz=7.1e6,
                    duration_s=1, receiver_ids=["f5len", "hb9q"])
    assert run_session_in_process(defs, instance, engine, session_key).success
    located = get_localization(engine, session_key)
    assert not located.localizable and "3" in located.reason and located.latitude is None


def test_launchpad_job_stores_the_typed_session(defs, instance, engine, session_key):
    result = defs.resolve_job_def("request_session_job").execute_in_process(instance=instance, run_config={
        "ops": {"request_session_op": {"config": {
            "center_frequency_hz": 7.1e6, "duration_s": 2.0, "receiver_ids": ["f5len", "hb9q"],
            "session_key": session_key, "transmitter": {"eirp_dbm": 45.0}}}}})
    assert result.success
    stored = get_session(engine, session_key)
    assert stored.status == "requested" and stored.receiver_ids == ("f5len", "hb9q")
    assert stored.transmitter["eirp_dbm"] == 45.0 and stored.requested_by == f"dagster:{result.run_id}"
