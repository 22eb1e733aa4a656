"""Servers dying under a session, and servers refusing the keys: a PRIVATE SeaweedFS and
PostgreSQL (fixture private_services) are killed and restarted; the shared ones are untouched."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from heimdall_pipeline.db.measurements_repo import count_measurements, measurements_for_session
from heimdall_pipeline_tests.runs import run_session_in_process
from heimdall_pipeline.storage.captures import load_capture
from heimdall_pipeline.storage.layout import parse_object_key
from heimdall_pipeline_tests.faults.conftest import (
    build_defs, check_evaluations, error_text, list_session_keys, make_store, private_client, request,
)

pytestmark = pytest.mark.faults

DEFAULT_IDS = ["dk0ghz", "f5len", "g0mjw", "hb9q", "hb9sl", "oe3xec", "ph0m"]


def assert_all_checks_passed(instance, run_id: str) -> None:
    evaluations = check_evaluations(instance, run_id)
    assert set(evaluations) == {"raw_iq_integrity", "raw_iq_captured", "raw_iq_gnss_quality", "receiver_metrics_rows"}
    for name, items in evaluations.items():
        assert all(e.passed for e in items), (name, [e.description for e in items])


def test_s3_killed_while_writing_then_restart_and_rerun(private_services, private_engine, fresh_instance, s3_hooks):
    env, s3 = private_services.env, private_services.s3
    record = request(private_engine)
    killed: list[int] = []
    once = threading.Lock()  # the IO manager stores the captures from several threads at once

    def remember_key(params, context, **_):
        context["fault_key"] = params.get("Key", "")

    def kill_after_first_npy(context, **_):
        # The first .npy of this session is stored: kill the server (SIGKILL, by its PID) before
        # its metadata or any other object is written.
        if context.get("fault_key", "").endswith(".npy") and record.session_key in context["fault_key"]:
            with once:
                if not killed:
                    pid = s3.pid()
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)

    s3_hooks += [("before-parameter-build.s3.PutObject", remember_key), ("after-call.s3.PutObject", kill_after_first_npy)]
    defs = build_defs(env, max_attempts=2)
    result = run_session_in_process(defs, fresh_instance, private_engine, record.session_key)
    s3_hooks.clear()

    assert killed, "the fault was never injected"
    assert not result.success
    failure = error_text(_run_result_events(fresh_instance, result.session_run_id))
    assert f"127.0.0.1:{env['HEIMDALL_S3_PORT']}" in failure, failure[-2000:]
    assert s3.pid() is None
    assert count_measurements(private_engine, session_key=record.session_key) == 0

    assert s3.start()  # restart (ready = a real put/get round trip)
    client = private_client(env)
    stored = list_session_keys(client, env["HEIMDALL_S3_BUCKET"], record.session_key)
    kinds = {(rid, kind) for _, rid, kind in map(parse_object_key, stored)}
    for rid, kind in kinds:
        if kind == "metadata":
            assert (rid, "iq") in kinds, f"metadata of {rid} exists without its .npy: {sorted(stored)}"

    again = run_session_in_process(build_defs(env), fresh_instance, private_engine, record.session_key)
    assert again.success
    assert_all_checks_passed(fresh_instance, again.session_run_id)
    rows = measurements_for_session(private_engine, record.session_key)
    assert sorted(r.receiver_id for r in rows) == DEFAULT_IDS
    store = make_store(env)
    for rid in DEFAULT_IDS:
        assert load_capture(store, record.session_key, rid) is not None


class _Events:
    def __init__(self, events):
        self.all_events = events


def _run_result_events(instance, run_id: str) -> _Events:
    return _Events([record.dagster_event for record in instance.all_logs(run_id) if record.dagster_event])


def test_postgres_stopped_during_metrics_write(private_services, private_engine, fresh_instance, monkeypatch):
    from heimdall_pipeline.db import measurements_repo

    env, pg = private_services.env, private_services.postgres
    record = request(private_engine)
    engine = private_engine
    stopped: list[int] = []
    writer = measurements_repo._measurements
    write_rows = writer.upsert

    def upsert_then_stop(conn, rows):
        # The rows are written (COPY on the driver's cursor, which SQLAlchemy's cursor events do
        # not see) inside the open transaction; the server goes down before COMMIT.
        written = write_rows(conn, rows)
        if not stopped:
            stopped.append(pg.pid())
            pg.stop()
        return written

    monkeypatch.setattr(writer, "upsert", upsert_then_stop)
    result = run_session_in_process(build_defs(env), fresh_instance, engine, record.session_key)
    monkeypatch.undo()
    assert stopped, "the fault was never injected"
    assert not result.success
    text = error_text(_run_result_events(fresh_instance, result.session_run_id))
    assert "receiver_metrics" in text and ("OperationalError" in text or "connection" in text.lower()), text[-2000:]

    assert pg.start()
    # Nothing of the interrupted transaction survived, though all 7 rows had been inserted in it.
    assert count_measurements(engine, session_key=record.session_key) == 0
    # The session does not stay launched: once the database is back, the reconciler fails it
    # with the run's reason.
    from heimdall_pipeline.db.sessions_repo import get_session
    from heimdall_pipeline.sensors import reconcile_sessions

    assert get_session(engine, record.session_key).status == "launched"
    assert reconcile_sessions(fresh_instance, engine)[record.session_key] == "failed"
    assert "receiver_metrics" in get_session(engine, record.session_key).status_reason
    # raw_iq was stored before the fault: the re-run measures it, exactly one row per partition.
    for _ in range(2):
        again = run_session_in_process(build_defs(env), fresh_instance, engine, record.session_key)
        assert again.success
        rows = measurements_for_session(engine, record.session_key)
        assert sorted(r.receiver_id for r in rows) == DEFAULT_IDS
    assert_all_checks_passed(fresh_instance, again.session_run_id)


@pytest.mark.parametrize("which", ["secret", "access_key"])
def test_wrong_s3_credentials_fail_at_resource_start_without_retry(private_services, private_engine,
                                                                   fresh_instance, s3_hooks, which):
    from heimdall_pipeline.resources.iq_store import S3AccessDeniedError

    env = private_services.env
    bad = {"secret_access_key": "wrong-secret"} if which == "secret" else {"access_key_id": "nosuchkey"}
    sent: list[str] = []
    s3_hooks.append(("before-send.s3", lambda request, **_: sent.append(request.method)))

    store = make_store(env, **bad)
    with pytest.raises(S3AccessDeniedError) as refused:
        store.client()
    assert env["HEIMDALL_S3_ENDPOINT_URL"] in str(refused.value) and env["HEIMDALL_S3_BUCKET"] in str(refused.value)
    assert sent == ["HEAD"], f"a 403 must not be retried; requests sent: {sent}"

    record = request(private_engine)
    sent.clear()
    result = run_session_in_process(build_defs(env, **bad), fresh_instance, private_engine, record.session_key)
    assert not result.success
    text = error_text(_run_result_events(fresh_instance, result.session_run_id))
    assert "refused access to bucket" in text
    # refused at resource start: raw_iq never ran, so nothing was recorded or written
    assert not any(r.dagster_event.step_key == "raw_iq" and r.dagster_event.event_type_value == "STEP_START"
                   for r in fresh_instance.all_logs(result.session_run_id) if r.dagster_event)
    assert list_session_keys(private_client(env), env["HEIMDALL_S3_BUCKET"], record.session_key) == []
    assert count_measurements(private_engine, session_key=record.session_key) == 0
    assert sent and set(sent) == {"HEAD"}, sent


def test_s3_client_retries_403_never_and_connection_errors_bounded(private_services):
    """object_store.s3_client (standard retry mode): a 403 is sent once; a dead endpoint is tried
    exactly max_attempts times, then the error names the endpoint."""
    from botocore.exceptions import ClientError, EndpointConnectionError

    env = private_services.env
    sent: list[str] = []
    denied = private_client({**env, "HEIMDALL_S3_SECRET_ACCESS_KEY": "wrong"}, max_attempts=4)
    denied.meta.events.register("before-send.s3", lambda request, **_: sent.append(request.url))
    with pytest.raises(ClientError) as refused:
        denied.put_object(Bucket=env["HEIMDALL_S3_BUCKET"], Key="sessions/x/websdr_y.npy", Body=b"x")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert len(sent) == 1

    sent.clear()
    dead = private_client({**env, "HEIMDALL_S3_ENDPOINT_URL": "http://127.0.0.1:9"}, max_attempts=3,
                          connect_timeout_s=1.0)
    dead.meta.events.register("before-send.s3", lambda request, **_: sent.append(request.url))
    with pytest.raises(EndpointConnectionError) as down:
        dead.head_bucket(Bucket=env["HEIMDALL_S3_BUCKET"])
    assert "127.0.0.1:9" in str(down.value)
    assert len(sent) == 3


def test_a_run_against_a_missing_bucket_fails_naming_it_and_never_creates_it(shared_services_env, engine,
                                                                             instance, s3_client):
    from botocore.exceptions import ClientError

    from heimdall_pipeline.resources.iq_store import MissingBucketError

    env = {**shared_services_env, "HEIMDALL_S3_BUCKET": f"heimdall-missing-{os.urandom(4).hex()}"}
    with pytest.raises(MissingBucketError, match=env["HEIMDALL_S3_BUCKET"]):
        make_store(env).client()

    record = request(engine, receivers=["f5len"])
    result = run_session_in_process(build_defs(env), instance, engine, record.session_key)
    assert not result.success
    assert f"bucket {env['HEIMDALL_S3_BUCKET']!r} does not exist" in error_text(_run_result_events(
        instance, result.session_run_id))
    assert count_measurements(engine, session_key=record.session_key) == 0
    with pytest.raises(ClientError):  # still missing: only setup creates it
        s3_client.head_bucket(Bucket=env["HEIMDALL_S3_BUCKET"])


def test_a_multipart_upload_that_fails_midway_is_aborted(shared_services_env, s3_client, session_key):
    """IQStore's multipart path: a failed part aborts the upload, so no parts are left on the server
    (when S3 itself is gone the abort cannot reach it: `heimdall verify` reports those, --repair removes them)."""
    env = shared_services_env
    store = make_store(env).model_copy(update={"multipart_threshold_mb": 5})

    def second_part_fails(request, **_):
        if "partNumber=2" in request.url:
            raise ConnectionError("injected: connection lost during part 2")

    key = f"sessions/{session_key}/websdr_f5len.npy"
    events = store.client().meta.events  # the client is shared per configuration: unhook after
    events.register("before-send.s3", second_part_fails)
    try:
        with pytest.raises(ConnectionError):
            store.put(key, os.urandom(12 * 1024 * 1024), "application/octet-stream", {})
    finally:
        events.unregister("before-send.s3", second_part_fails)
    assert s3_client.list_multipart_uploads(Bucket=env["HEIMDALL_S3_BUCKET"], Prefix=key).get("Uploads", []) == []
    assert list_session_keys(s3_client, env["HEIMDALL_S3_BUCKET"], session_key) == []
