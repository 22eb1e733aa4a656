"""Bad receivers, bad input, SQL-looking text, sensor restarts and a burst of 50 sessions, on a
PRIVATE database and S3 (the receivers registered here must not leak into other tests)."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

import pytest
from dagster import build_sensor_context

from heimdall_pipeline.db.captures_repo import outcomes_for_session
from heimdall_pipeline.db.measurements_repo import count_measurements, measurements_for_session
from heimdall_pipeline.db.receivers_repo import add_receiver, get_receiver
from heimdall_pipeline.db.sessions_repo import get_session
from heimdall_pipeline.partitions import capture_key
from heimdall_pipeline.receivers import InvalidReceiverError, Receiver
from heimdall_pipeline.resources import HeimdallDatabase
from heimdall_pipeline_tests.runs import run_session_in_process
from heimdall_pipeline.sensors import session_request_sensor
from heimdall_pipeline.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG, RECEIVER_TAG_PREFIX
from heimdall_pipeline.session_requests import request_session
from heimdall_pipeline.sessions import InvalidSessionRequestError
from heimdall_pipeline.storage.captures import has_capture, load_capture
from heimdall_pipeline.storage.layout import InvalidKeyError, iq_object_key, metadata_object_key
from heimdall_pipeline_tests.faults.conftest import (
    build_defs, check_evaluations, make_store, new_key, partition_metadata, private_client, request,
)
from heimdall_pipeline_tests.kiwisdr_server import FakeKiwiSDR

pytestmark = pytest.mark.faults

DEFAULT_IDS = ["dk0ghz", "f5len", "g0mjw", "hb9q", "hb9sl", "oe3xec", "ph0m"]
BURST_IN_PROCESS = min(50, int(os.environ.get("HEIMDALL_FAULTS_BURST_IN_PROCESS", "10")))


# ------------------------------------------------------------------ receivers failing in a session
KIWI_FAULTS = {  # receiver id -> (FakeKiwiSDR mode, receiver timeout, expected error type)
    "kiwi-ok": ("normal", 20.0, None),
    "kiwi-timeout": ("slow", 2.0, "Timeout"),
    "kiwi-refuses": ("bad_password", 20.0, "ReceiverAuthError"),
    "kiwi-busy": ("busy", 20.0, "ReceiverBusyError"),
    "kiwi-garbage": ("garbage", 20.0, "ProtocolError"),
    "kiwi-truncated": ("drop", 20.0, "StreamInterruptedError"),
}


def test_failing_receivers_do_not_lose_the_others(private_services, private_engine, fresh_instance):
    env = private_services.env
    # amplitude 40: a noiseless full-scale tone would measure an SNR beyond the plausibility bound
    servers = {rid: FakeKiwiSDR(mode=mode, amplitude=40).__enter__() for rid, (mode, _, _) in KIWI_FAULTS.items()}
    try:
        for rid, server in servers.items():
            add_receiver(private_engine, server.receiver(rid, timeout_seconds=KIWI_FAULTS[rid][1], retry_count=0))
        receivers = [*KIWI_FAULTS, "f5len"]
        record = request(private_engine, receivers=receivers, duration_s=0.5,
                         scheduled_for=datetime.now(timezone.utc))  # live window open
        result = run_session_in_process(build_defs(env), fresh_instance, private_engine, record.session_key)
    finally:
        for server in servers.values():
            server.__exit__(None, None, None)
        from heimdall_pipeline.db.receivers_repo import set_receiver_active
        for rid in KIWI_FAULTS:  # keep later "all active receivers" requests of this module simulated
            set_receiver_active(private_engine, rid, False)

    key = record.session_key
    failed = {rid for rid, (_, _, err) in KIWI_FAULTS.items() if err}
    # the partitions' recorded status and named error
    metadata = partition_metadata(fresh_instance, "raw_iq", [capture_key(key, rid) for rid in receivers])
    for rid in receivers:
        m = metadata[capture_key(key, rid)]
        if rid in failed:
            assert m["capture_status"] == "failed", (rid, m)
            assert KIWI_FAULTS[rid][2] in m["error"], (rid, m["error"])
        else:
            assert m["capture_status"] == "stored", (rid, m)
    # the captured-check fails naming exactly the failed partitions; the others' checks pass
    # f5len and the kiwi receivers registered far apart: still one run
    assert len(result.session_run_ids) == 1
    evaluations: dict[str, list] = {}
    for run_id in result.session_run_ids:
        for name, found in check_evaluations(fresh_instance, run_id).items():
            evaluations.setdefault(name, []).extend(found)
    captured = [e for e in evaluations["raw_iq_captured"] if not e.passed]
    assert len(captured) == 1 and captured[0].severity.value == "ERROR"  # visibly failed, not a warning
    assert sorted(captured[0].metadata["missing_captures"].value) == sorted(capture_key(key, rid) for rid in failed)
    assert all(e.passed for name in ("raw_iq_integrity", "receiver_metrics_rows") for e in evaluations[name])
    # each receiver's outcome is in the database, with the named error and the attempts
    outcomes = outcomes_for_session(private_engine, key)
    assert set(outcomes) == set(receivers)
    for rid in failed:
        assert outcomes[rid].status == "failed" and KIWI_FAULTS[rid][2] in outcomes[rid].reason, outcomes[rid]
        assert outcomes[rid].attempts >= 1 and outcomes[rid].sha256 is None
    for rid in ("kiwi-ok", "f5len"):
        stored = outcomes[rid]
        assert stored.status == "stored" and stored.bytes > 0 and len(stored.sha256) == 64
        assert stored.start_time < stored.end_time
        head = private_client(env).head_object(Bucket=env["HEIMDALL_S3_BUCKET"], Key=iq_object_key(key, rid))
        assert head["Metadata"]["sha256"] == stored.sha256
    assert get_session(private_engine, key).status == "succeeded"
    assert "2 of 7 receivers measured" in get_session(private_engine, key).status_reason
    # the others succeeded: objects and rows
    store = make_store(env)
    for rid in ("kiwi-ok", "f5len"):
        assert load_capture(store, key, rid) is not None
    for rid in failed:
        assert not has_capture(store, key, rid)
    assert sorted(r.receiver_id for r in measurements_for_session(private_engine, key)) == ["f5len", "kiwi-ok"]
    # session_summary names each failed receiver with its error
    summary = partition_metadata(fresh_instance, "session_summary", [key])[key]
    assert summary["status"] == "succeeded" and summary["receivers_measured"] == 2
    assert set(summary["receivers_failed"]) == failed
    for rid in failed:
        assert KIWI_FAULTS[rid][2] in summary["receivers_failed"][rid]


# ------------------------------------------------------------------ bad requests
@pytest.fixture(scope="module")
def special_receivers(private_engine):
    """An inactive receiver and an active HF-only KiwiSDR (never recorded from: requests fail first)."""
    add_receiver(private_engine, Receiver(id="off-rx", name="Off", url="sim://off-rx", kind="simulated",
                                          location_name="x", latitude=1.0, longitude=1.0, is_active=False))
    add_receiver(private_engine, Receiver(id="kiwi-hf", name="HF only", url="http://127.0.0.1:9", kind="kiwisdr",
                                          location_name="x", latitude=1.0, longitude=1.0, is_active=False))
    return private_engine


BAD_REQUESTS = [
    ({"center_frequency_hz": 0}, "center_frequency_hz"),
    ({"center_frequency_hz": -7e6}, "center_frequency_hz"),
    ({"center_frequency_hz": 7e9, "receiver_ids": ["f5len"]}, "center_frequency_hz"),  # above 6 GHz simulated range
    ({"duration_s": 0}, "duration_s"),
    ({"duration_s": -1}, "duration_s"),
    ({"duration_s": 601}, "duration_s"),
    ({"sample_rate_hz": 0}, "sample_rate_hz"),
    ({"sample_rate_hz": 1e9}, "sample_rate_hz"),
    ({"sample_rate_hz": "fast"}, "sample_rate_hz"),
    ({"receiver_ids": ["nosuchrx"]}, "receiver_ids"),
    ({"receiver_ids": ["off-rx"]}, "receiver_ids"),
]


@pytest.mark.parametrize("fields, field", BAD_REQUESTS, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD_REQUESTS)])
def test_bad_request_refused_before_any_partition(special_receivers, fresh_instance, fields, field):
    engine = special_receivers
    key = new_key("bad")
    values = {"center_frequency_hz": 7.1e6, "duration_s": 1.0, "sample_rate_hz": 12000.0, "receiver_ids": ["f5len"],
              **fields}
    with pytest.raises(InvalidSessionRequestError) as refused:
        request_session(engine, requested_by="faults-test", session_key=key, **values)
    assert refused.value.field == field and field in str(refused.value)
    assert get_session(engine, key) is None
    # and so the sensor has nothing to turn into a partition
    sensor_result = session_request_sensor(build_sensor_context(instance=fresh_instance,
                                                                resources={"database": HeimdallDatabase(url=engine.url.render_as_string(hide_password=False))}))
    added = [k for req in sensor_result.dynamic_partitions_requests for k in getattr(req, "partition_keys", [])]
    assert key not in added and key not in fresh_instance.get_dynamic_partitions("sessions")


def test_vhf_on_kiwisdr_refused_naming_receiver_and_range(special_receivers):
    from heimdall_pipeline.db.receivers_repo import set_receiver_active

    set_receiver_active(special_receivers, "kiwi-hf", True)
    try:
        key = new_key("vhf")
        with pytest.raises(InvalidSessionRequestError) as refused:
            request_session(special_receivers, requested_by="t", session_key=key, center_frequency_hz=145.5e6,
                            duration_s=1, sample_rate_hz=12000, receiver_ids=["kiwi-hf"])
        assert refused.value.field == "center_frequency_hz" and "kiwi-hf" in str(refused.value)
        assert "0..30 MHz" in str(refused.value)
        assert get_session(special_receivers, key) is None
    finally:
        set_receiver_active(special_receivers, "kiwi-hf", False)


BAD_KEYS = ["a/b", "..", "a/../b", "rx|sess", "a,b", "has space", "x" * 300, "Upper", ""]


@pytest.mark.parametrize("bad", BAD_KEYS, ids=["slash", "dotdot", "traversal", "pipe", "comma", "space", "300chars",
                                               "uppercase", "empty"])
def test_bad_keys_refused_before_s3_key_or_sql(private_services, private_engine, s3_hooks, bad):
    sent: list[str] = []
    s3_hooks.append(("before-send.s3", lambda request, **_: sent.append(request.url)))
    statements: list[str] = []
    import sqlalchemy as sa

    def record_sql(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(private_engine, "before_cursor_execute", record_sql)
    try:
        # (an empty key asks for a generated one, so the request case uses a leading '-' instead)
        with pytest.raises(InvalidSessionRequestError) as refused:
            request_session(private_engine, requested_by="t", session_key=bad or "-x", center_frequency_hz=7e6,
                            duration_s=1, receiver_ids=["f5len"])
        assert refused.value.field == "session_key"
        assert not [s for s in statements if "sessions" in s and "INSERT" in s.upper()]
        with pytest.raises(InvalidKeyError):
            iq_object_key(bad, "f5len")
        with pytest.raises(InvalidKeyError):
            metadata_object_key("s1", bad)
        with pytest.raises(InvalidReceiverError):
            add_receiver(private_engine, Receiver(id=bad, name="n", url="sim://x", kind="simulated",
                                                  location_name="x", latitude=0.0, longitude=0.0))
        store = make_store(private_services.env)
        store.client()  # bucket check done; from here on, count only what the bad key would cause
        sent.clear()
        statements.clear()
        for session_key, receiver_id in (("s1", bad), (bad, "f5len")):
            with pytest.raises(InvalidKeyError):
                load_capture(store, session_key, receiver_id)
        from heimdall_pipeline.verify import select_sessions
        with pytest.raises(InvalidKeyError):
            select_sessions(private_engine, [bad])
        assert sent == [] and statements == []
    finally:
        sa.event.remove(private_engine, "before_cursor_execute", record_sql)


SQLISH = "Robert'); DROP TABLE measurements; --"


def test_sql_looking_text_stored_verbatim(private_services, private_engine, fresh_instance):
    env = private_services.env
    add_receiver(private_engine, Receiver(id="sqlrx", name=SQLISH, url="sim://sqlrx", kind="simulated",
                                          location_name="x' OR '1'='1; DELETE FROM sessions; --",
                                          latitude=47.0, longitude=8.0))
    try:
        by = "'; UPDATE sessions SET status='archived'; --"
        record = request(private_engine, receivers=["sqlrx", "f5len"], requested_by=by)
        result = run_session_in_process(build_defs(env), fresh_instance, private_engine, record.session_key)
        assert result.success
        rx = get_receiver(private_engine, "sqlrx")
        assert rx.name == SQLISH and rx.location_name == "x' OR '1'='1; DELETE FROM sessions; --"
        stored = get_session(private_engine, record.session_key)
        assert stored.requested_by == by and stored.status == "succeeded"
        assert count_measurements(private_engine, session_key=record.session_key) == 2  # table still there
        meta = json.loads(private_client(env).get_object(Bucket=env["HEIMDALL_S3_BUCKET"],
                          Key=metadata_object_key(record.session_key, "sqlrx"))["Body"].read())
        assert meta["global"]["heimdall:receiver_name"] == SQLISH
    finally:
        from heimdall_pipeline.db.receivers_repo import set_receiver_active
        set_receiver_active(private_engine, "sqlrx", False)


# ------------------------------------------------------------------ sensor: restarts and bursts
def _sensor_context(instance, engine, cursor=None):
    return build_sensor_context(instance=instance, cursor=cursor,
                                resources={"database": HeimdallDatabase(url=engine.url.render_as_string(hide_password=False))})


def _launch_like_the_daemon(instance, defs, run_requests) -> list:
    """What the sensor daemon does per run request that passed its run-key check: create the
    run tagged with the sensor name and run key (here: created, never executed; the daemon reuses
    a NOT_STARTED run with the same key and skips a started one, so either way no second run)."""
    from dagster import DagsterRunStatus

    from heimdall_pipeline.tags import RUN_KEY_TAG, SENSOR_NAME_TAG

    job = defs.resolve_job_def("session_job")
    return [instance.create_run_for_job(job_def=job, status=DagsterRunStatus.NOT_STARTED,
                                        tags={**rr.tags, RUN_KEY_TAG: rr.run_key,
                                              SENSOR_NAME_TAG: session_request_sensor.name})
            for rr in run_requests]


def _already_launched(instance, run_requests) -> dict:
    """Dagster's own run-key dedup (dagster._daemon.sensor.fetch_existing_runs)."""
    from types import SimpleNamespace

    from dagster._daemon.sensor import fetch_existing_runs

    return fetch_existing_runs(instance, SimpleNamespace(name=session_request_sensor.name), run_requests)


def test_sensor_restart_mid_tick_and_burst_of_50(private_services, private_engine, fresh_instance):
    env, engine = private_services.env, private_engine
    defs = build_defs(env)
    pending_before = {r.session_key for r in __import__(
        "heimdall_pipeline.db.sessions_repo", fromlist=["requested_sessions"]).requested_sessions(engine, limit=1000)}
    records = [request(engine, receivers=DEFAULT_IDS, duration_s=0.05) for _ in range(50)]
    keys = [r.session_key for r in records]

    def session_of(rr) -> str:
        return rr.tags["heimdall/session"]

    # tick 1: every request, as one run over its capture partitions (the kiwi receivers registered
    # above sit between the default ones in the registry: it does not matter)
    first = session_request_sensor(_sensor_context(fresh_instance, engine))
    by_key: dict[str, list] = {}
    for rr in first.run_requests:
        by_key.setdefault(session_of(rr), []).append(rr)
    assert set(keys) <= set(by_key) and set(by_key) == pending_before | set(keys)
    assert all(len(by_key[key]) == 1 for key in keys)
    assert set(fresh_instance.get_dynamic_partitions("captures")) >= {capture_key(k, r) for k in keys for r in DEFAULT_IDS}

    # the daemon launches the tick's runs ... then dies before the cursor is stored: the next tick
    # starts from the OLD cursor
    launched_half = [rr for k in keys[:25] for rr in by_key[k]]  # died halfway through launching
    _launch_like_the_daemon(fresh_instance, defs, launched_half)

    again = session_request_sensor(_sensor_context(fresh_instance, engine, cursor=None))
    again_keys = [session_of(rr) for rr in again.run_requests]
    assert set(keys) <= set(again_keys), "a session was lost by the restart"
    session_by_run_key = {rr.run_key: session_of(rr) for rr in again.run_requests}
    existing = _already_launched(fresh_instance, again.run_requests)
    assert {session_by_run_key[k] for k in existing} == set(keys[:25])  # those are skipped by run key ...
    to_launch = [rr for rr in again.run_requests if rr.run_key not in existing and session_of(rr) in keys]
    assert list(dict.fromkeys(session_of(rr) for rr in to_launch)) == keys[25:]  # ... the rest, none twice
    _launch_like_the_daemon(fresh_instance, defs, to_launch)
    third = session_request_sensor(_sensor_context(fresh_instance, engine, cursor=again.cursor))
    assert {session_by_run_key.get(k) for k in _already_launched(fresh_instance, third.run_requests)} >= set(keys)
    from dagster import RunsFilter
    for key in keys:
        assert len(fresh_instance.get_runs(filters=RunsFilter(tags={"heimdall/session": key}))) == len(by_key[key])

    # the same sessions through the in-process path: one single run over the sessions x 7 range
    # (as a backfill). All 50 cost ~1 min on an idle 2-core machine (350 captures + spectrum PNGs),
    # 5 min under load: the default suite runs the first BURST_IN_PROCESS, set
    # HEIMDALL_FAULTS_BURST_IN_PROCESS=50 for all of them.
    keys = keys[:BURST_IN_PROCESS]
    # the sensor added each session's captures together, sessions in launch order: one range
    captures_order = fresh_instance.get_dynamic_partitions("captures")
    wanted = [capture_key(k, rid) for k in keys for rid in DEFAULT_IDS]
    first, last = captures_order.index(wanted[0]), captures_order.index(wanted[-1])
    assert captures_order[first:last + 1] == wanted
    result = defs.resolve_job_def("session_job").execute_in_process(instance=fresh_instance, raise_on_error=False, tags={
        ASSET_PARTITION_RANGE_START_TAG: wanted[0], ASSET_PARTITION_RANGE_END_TAG: wanted[-1]})
    assert result.success
    for key in keys:
        assert sorted(r.receiver_id for r in measurements_for_session(engine, key)) == DEFAULT_IDS
    assert sum(count_measurements(engine, session_key=k) for k in keys) == len(keys) * 7
