"""States that must end true (#16): the session's status is the outcome, refused sessions end
`failed` with their reason, runs that ended (or whose worker died) leave no session `launched`,
one launch per session at a time, receivers pending sessions use are not edited under them, and
a session's runs hold only its requested receivers. PRIVATE database and S3."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from dagster import DagsterRunStatus, build_sensor_context

from heimdall_pipeline.db.captures_repo import outcomes_for_session
from heimdall_pipeline.db.measurements_repo import count_measurements
from heimdall_pipeline.db.receivers_repo import (
    ReceiverInUseError, add_receiver, get_receiver, set_receiver_active, update_receiver,
)
from heimdall_pipeline.db.sessions_repo import SessionAlreadyLaunchedError, claim_launch, get_session
from heimdall_pipeline.partitions import add_session_partitions, capture_key
from heimdall_pipeline.tags import LAUNCH_TAG, SESSION_TAG
from heimdall_pipeline.receivers import DEFAULT_RECEIVERS, Receiver
from heimdall_pipeline.resources import HeimdallDatabase
from heimdall_pipeline.sensors import (
    MAX_SESSIONS_PER_TICK, reconcile_sessions, session_request_sensor, session_run_request,
)
from heimdall_pipeline_tests.faults.conftest import (
    build_defs, list_session_keys, new_key, partition_metadata, private_client, request,
)
from heimdall_pipeline_tests.runs import run_session_in_process

pytestmark = pytest.mark.faults


def dead_receiver(engine, rid: str) -> Receiver:
    """A live (KiwiSDR) receiver nobody answers at: every capture fails at once."""
    receiver = add_receiver(engine, Receiver(id=rid, name=rid, url="http://127.0.0.1:9", kind="kiwisdr",
                                             location_name="nowhere", latitude=48.0, longitude=11.0,
                                             timeout_seconds=2.0, retry_count=0, is_active=False))
    return receiver


def request_only(engine, rid: str, **fields):
    """A session of one receiver that stays inactive for everyone else (other tests request
    "all active receivers")."""
    set_receiver_active(engine, rid, True)
    try:
        return request(engine, receivers=[rid], **fields)
    finally:
        set_receiver_active(engine, rid, False)


def session_job(env):
    return build_defs(env).get_job_def("session_job")


# ----------------------------------------------------------------------------- 1. exit code
def test_session_run_reports_the_sessions_status_and_exit_code(private_services, private_engine, monkeypatch,
                                                               tmp_path, capsys):
    """0 of 1 receivers measured: the CLI prints 'failed' with the reason and exits 1 (it printed
    'succeeded' and exited 0 from the Dagster run's status)."""
    from heimdall_pipeline import cli

    for name, value in private_services.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    rid = f"dead{new_key()[-6:]}"
    dead_receiver(private_engine, rid)
    record = request_only(private_engine, rid)
    assert cli.main(["session", "run", record.session_key]) == 1
    out = capsys.readouterr().out
    assert f"session {record.session_key}: failed (0 of 1 receivers measured; {rid}:" in out
    session = get_session(private_engine, record.session_key)
    assert session.status == "failed" and rid in session.status_reason
    assert outcomes_for_session(private_engine, record.session_key)[rid].status == "failed"

    # 2nd launch of the same session while one holds it: a named refusal, nothing run or written
    claim_launch(private_engine, record.session_key, "cli:someone-else")
    assert cli.main(["session", "run", record.session_key]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "already launched" in err and "cli:someone-else" in err


# ----------------------------------------------------------------------------- 2. refused early
def test_a_session_refused_before_recording_ends_failed_with_its_reason(private_services, private_engine,
                                                                        fresh_instance):
    """One live receiver among simulated ones makes a session of the past refused: its capture row
    carries its own error, the others say they were not recorded, and the reason says it once."""
    # ids next to each other (receivers are in id order): one block of receivers, so one run that
    # is refused as a whole
    prefix = f"rf{new_key()[-6:]}"
    rid = f"{prefix}0live"
    dead_receiver(private_engine, rid)
    simulated = [add_receiver(private_engine, Receiver(
        id=f"{prefix}{i + 1}sim", name="sim", url="sim://refused", kind="simulated", location_name="x",
        latitude=47.0 + i, longitude=8.0, is_active=False)).id for i in range(3)]
    past = datetime.now(timezone.utc) - timedelta(days=1)  # a live receiver cannot record the past
    for receiver in (rid, *simulated):
        set_receiver_active(private_engine, receiver, True)
    try:
        record = request(private_engine, receivers=[rid, *simulated], scheduled_for=past)
    finally:
        for receiver in (rid, *simulated):
            set_receiver_active(private_engine, receiver, False)
    result = run_session_in_process(build_defs(private_services.env), fresh_instance, private_engine,
                                    record.session_key)
    assert not result.success
    session = get_session(private_engine, record.session_key)
    assert session.status == "failed" and "backfill receiver_metrics" in session.status_reason
    assert session.status_reason.count("cannot re-record") == 1, session.status_reason
    outcomes = outcomes_for_session(private_engine, record.session_key)
    assert (outcomes[rid].status, outcomes[rid].error_type) == ("failed", "LiveWindowClosedError")
    assert "cannot re-record" in outcomes[rid].error_message
    for other in simulated:
        assert (outcomes[other].status, outcomes[other].error_type) == ("failed", "SessionRefusedError")
        assert "cannot re-record" not in outcomes[other].error_message and rid in outcomes[other].error_message


def test_runs_that_failed_before_claiming_fail_their_sessions_and_starve_nobody(private_services, private_engine,
                                                                                fresh_instance):
    """A full tick of requests whose runs all fail before recording (e.g. a resource could not
    start) ends them `failed`; a newer request is launched on the next tick."""
    defs = build_defs(private_services.env)
    resources = {"database": HeimdallDatabase(url=private_services.env["HEIMDALL_DATABASE_URL"])}
    job = defs.get_job_def("session_job")
    old = [request(private_engine, receivers=["f5len"]).session_key for _ in range(MAX_SESSIONS_PER_TICK)]

    with build_sensor_context(instance=fresh_instance, resources=resources) as context:
        first = session_request_sensor(context)
    launched = {r.tags[SESSION_TAG] for r in first.run_requests}
    assert set(old) <= launched
    for run_request in first.run_requests:  # each run dies before raw_iq claims its session
        run = fresh_instance.create_run_for_job(job, tags=run_request.tags, status=DagsterRunStatus.STARTING)
        fresh_instance.report_run_failed(run, "resource 'iq_store' could not start: bucket missing")
    newer = request(private_engine, receivers=["f5len"]).session_key

    with build_sensor_context(instance=fresh_instance, resources=resources, cursor=first.cursor) as context:
        second = session_request_sensor(context)
    assert [r.tags[SESSION_TAG] for r in second.run_requests] == [newer]
    for key in old:
        session = get_session(private_engine, key)
        assert session.status == "failed" and "bucket missing" in session.status_reason, session


# ----------------------------------------------------------------------------- 3. runs that ended
def test_a_launched_session_whose_run_ended_is_not_left_launched(private_services, private_engine, fresh_instance):
    """The worker died mid-run (PostgreSQL lost, process killed): run monitoring ends the run by
    its max runtime (the session run carries one) and cancels it; the reconciler then fails the
    session with the run's reason. A run still going leaves the session launched."""
    job = session_job(private_services.env)
    record = request(private_engine, receivers=["f5len"])
    key = record.session_key
    ranges, _ = add_session_partitions(fresh_instance, {key: ["f5len"]})
    run_request = session_run_request(record, ranges[key], "cli:worker-died")
    assert int(run_request.tags["dagster/max_runtime"]) >= record.duration_s
    claim_launch(private_engine, key, "cli:worker-died")
    run = fresh_instance.create_run_for_job(job, tags=run_request.tags, status=DagsterRunStatus.STARTED)
    assert reconcile_sessions(fresh_instance, private_engine) == {}
    assert get_session(private_engine, key).status == "launched"

    fresh_instance.report_run_canceled(run, "exceeded maximum runtime of 900 seconds")  # what monitoring does
    assert reconcile_sessions(fresh_instance, private_engine)[key] == "failed"
    session = get_session(private_engine, key)
    assert session.status == "failed" and "CANCELED" in session.status_reason


def test_a_launch_that_never_started_a_run_is_failed_after_its_grace(private_engine, fresh_instance):
    record = request(private_engine, receivers=["f5len"])
    claim_launch(private_engine, record.session_key, "cli:crashed-before-running")
    assert reconcile_sessions(fresh_instance, private_engine) == {}
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    assert reconcile_sessions(fresh_instance, private_engine, now=later)[record.session_key] == "failed"
    assert "started no run" in get_session(private_engine, record.session_key).status_reason


def test_dagster_yaml_run_monitoring_ends_runs_of_dead_workers():
    import yaml

    from heimdall_pipeline.settings import REPO_ROOT

    monitoring = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())["run_monitoring"]
    assert monitoring["enabled"] and monitoring["max_runtime_seconds"] > 0
    assert monitoring["cancel_timeout_seconds"] > 0 and monitoring["start_timeout_seconds"] > 0


# ----------------------------------------------------------------------------- 4. one launch at a time
def test_a_second_launch_of_a_session_is_refused_and_writes_nothing(private_services, private_engine,
                                                                    fresh_instance):
    env = private_services.env
    record = request(private_engine, receivers=["f5len", "ph0m"])
    key = record.session_key
    claim_launch(private_engine, key, "cli:first")
    with pytest.raises(SessionAlreadyLaunchedError, match="already launched"):
        claim_launch(private_engine, key, "cli:second")
    # a run of another launch reaching raw_iq is refused by name before recording
    result = run_session_in_process(build_defs(env), fresh_instance, private_engine, key)
    assert not result.success
    from dagster import DagsterEventType

    failures = [r.dagster_event.step_failure_data.error.message
                for r in fresh_instance.all_logs(result.session_run_id, of_type=DagsterEventType.STEP_FAILURE)]
    assert any("already launched" in message and "cli:first" in message for message in failures), failures
    assert list_session_keys(private_client(env), env["HEIMDALL_S3_BUCKET"], key) == []
    assert count_measurements(private_engine, session_key=key) == 0
    assert outcomes_for_session(private_engine, key) == {}
    session = get_session(private_engine, key)
    assert (session.status, session.run_id) == ("launched", "cli:first")


# ----------------------------------------------------------------------------- 5. receiver edits
def test_editing_what_a_pending_session_needs_of_a_receiver_is_refused(private_engine):
    rid = f"edit{new_key()[-6:]}"
    add_receiver(private_engine, Receiver(id=rid, name="before", url="sim://x", kind="simulated",
                                          location_name="here", latitude=47.0, longitude=8.0))
    set_receiver_active(private_engine, rid, False)
    record = request_only(private_engine, rid)
    with pytest.raises(ReceiverInUseError, match=f"{rid}.*latitude.*{record.session_key}"):
        update_receiver(private_engine, rid, latitude=10.0)
    assert get_receiver(private_engine, rid).latitude == 47.0
    assert update_receiver(private_engine, rid, name="renamed").name == "renamed"  # names may change
    claim_launch(private_engine, record.session_key, "cli:x")
    with pytest.raises(ReceiverInUseError):
        update_receiver(private_engine, rid, kind="kiwisdr", url="http://127.0.0.1:9")
    from heimdall_pipeline.db.sessions_repo import transition

    transition(private_engine, record.session_key, "failed", reason="test")
    assert update_receiver(private_engine, rid, latitude=10.0).latitude == 10.0  # nothing pending


# ----------------------------------------------------------------------------- 6. requested receivers only
def test_a_sessions_runs_hold_only_its_requested_receivers(private_services, private_engine, fresh_instance):
    """Requested f5len and hb9q, far apart in the registry: one run, and no partition of an
    unrequested receiver exists or is materialized."""
    env = private_services.env
    record = request(private_engine, receivers=["f5len", "hb9q"])
    key = record.session_key
    result = run_session_in_process(build_defs(env), fresh_instance, private_engine, key)
    assert result.success and result.status == "succeeded"
    assert len(result.session_run_ids) == 1
    runs = [fresh_instance.get_run_by_id(run_id) for run_id in result.session_run_ids]
    assert len({run.tags[LAUNCH_TAG] for run in runs}) == 1
    assert [k for k in fresh_instance.get_dynamic_partitions("captures") if k.startswith(f"{key}.")] == [
        capture_key(key, "f5len"), capture_key(key, "hb9q")]
    metadata = partition_metadata(fresh_instance, "raw_iq", [capture_key(key, r.id) for r in DEFAULT_RECEIVERS])
    assert set(metadata) == {capture_key(key, "f5len"), capture_key(key, "hb9q")}
    assert {m["capture_status"] for m in metadata.values()} == {"stored"}
    assert set(outcomes_for_session(private_engine, key)) == {"f5len", "hb9q"}

