"""Archive → restore of a session's partitions loses nothing (real SeaweedFS, TimescaleDB and a
PostgreSQL-backed Dagster instance).

Isolation: a scratch heimdall database (so archiving "everything older than N days" only sees
this module's sessions) and a private Dagster instance database; the IQ goes to the shared
bucket under this module's own session keys.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from heimdall_pipeline_tests.integration.db_fixtures import scratch_database
from heimdall_pipeline.partitions import capture_key
from heimdall_pipeline.runner import session_runs

RECEIVERS = ["f5len", "ph0m", "g0mjw"]  # requested; the other registered receivers are "not requested"


@pytest.fixture(scope="module")
def env(embedded_services):
    """Scratch heimdall DB + private DAGSTER_HOME, exported for Dagster's EnvVar resources and the CLI."""
    from heimdall_pipeline.bench.scale import private_dagster_home
    from heimdall_pipeline.db.receivers_repo import seed_default_receivers

    with scratch_database(timescaledb=True) as app_engine, private_dagster_home("heimdall_lifecycle") as (home, _):
        seed_default_receivers(app_engine)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HEIMDALL_DATABASE_URL", app_engine.url.render_as_string(hide_password=False))
            mp.setenv("DAGSTER_HOME", str(home))
            yield app_engine, home


@pytest.fixture(scope="module")
def pg_instance(env):
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        yield instance


def _record(defs, instance, engine, key: str, *, days_ago: float) -> None:
    from heimdall_pipeline_tests.runs import run_session_in_process
    from heimdall_pipeline.session_requests import request_session

    request_session(engine, requested_by="test_lifecycle", center_frequency_hz=7.1e6, duration_s=0.5,
                    source_kind="simulated", receiver_ids=RECEIVERS, session_key=key)
    result = run_session_in_process(defs, instance, engine, key)
    assert result.success, key
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE sessions SET scheduled_for = :t WHERE session_key = :k"),
                     {"t": datetime.now(timezone.utc) - timedelta(days=days_ago), "k": key})


@pytest.fixture(scope="module")
def recorded(env, pg_instance, defs):
    """An old session (100 days) and a recent one (1 day), both recorded through Dagster."""
    import uuid

    engine, _ = env
    old, recent = f"old{uuid.uuid4().hex[:10]}", f"new{uuid.uuid4().hex[:10]}"
    _record(defs, pg_instance, engine, old, days_ago=100)
    _record(defs, pg_instance, engine, recent, days_ago=1)
    return old, recent


def _partition_keys(instance, session_key: str) -> list[str]:
    """Every capture key the session could have (one per registered default receiver)."""
    from heimdall_pipeline.receivers import DEFAULT_RECEIVERS

    return [capture_key(session_key, r.id) for r in DEFAULT_RECEIVERS]


def status(instance, session_key: str) -> dict:
    """Per asset: which partitions of the session are materialized AND exist (what the UI shows),
    with the storage id of their latest materialization."""
    from dagster import AssetKey, DagsterEventType

    from heimdall_pipeline.partitions import capture_partitions, session_partitions

    out = {}
    multi = set(capture_partitions.get_partition_keys(dynamic_partitions_store=instance))
    sessions = set(session_partitions.get_partition_keys(dynamic_partitions_store=instance))
    for asset, keys, existing in (("raw_iq", _partition_keys(instance, session_key), multi),
                                  ("receiver_metrics", _partition_keys(instance, session_key), multi),
                                  ("session_summary", [session_key], sessions)):
        latest = instance.get_latest_storage_id_by_partition(
            AssetKey(asset), DagsterEventType.ASSET_MATERIALIZATION, partitions=set(keys))
        out[asset] = {k: v for k, v in latest.items() if k in existing}
    return out


def event_count(instance, asset: str, keys: list[str]) -> int:
    from dagster import AssetKey, AssetRecordsFilter

    return len(instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=keys), limit=10_000).records)


def objects(s3_client, session_key: str) -> dict[str, str]:
    listing = s3_client.list_objects_v2(Bucket=os.environ["HEIMDALL_S3_BUCKET"], Prefix=f"sessions/{session_key}/")
    return {o["Key"]: o["ETag"] for o in listing.get("Contents", [])}


def rows(engine, session_key: str) -> list:
    from heimdall_pipeline.db.measurements_repo import measurements_for_session

    return sorted((r.receiver_id, r.snr_db, r.iq_data_path) for r in measurements_for_session(engine, session_key))


def test_archive_then_restore_loses_nothing_and_backfill_works(env, pg_instance, recorded, defs, s3_client):
    from dagster import AssetKey

    from heimdall_pipeline.db.sessions_repo import get_session
    from heimdall_pipeline.lifecycle import archive_sessions, restore_sessions

    engine, _ = env
    old, recent = recorded
    before = {"status": status(pg_instance, old), "objects": objects(s3_client, old), "rows": rows(engine, old),
              "session": get_session(engine, old).status}
    # only the requested receivers' partitions are in the session's run
    assert len(before["status"]["raw_iq"]) == len(RECEIVERS) == len(before["status"]["receiver_metrics"])
    assert len(before["status"]["session_summary"]) == 1
    captures = [k for k in before["objects"] if "/websdr_" in k]  # + session-level objects (localization)
    assert len(captures) == 3 * len(RECEIVERS) and len(before["rows"]) == len(RECEIVERS)
    events_before = event_count(pg_instance, "raw_iq", _partition_keys(pg_instance, old))

    dry = archive_sessions(pg_instance, engine, 30, dry_run=True)
    assert dry.archived == [old] and old in pg_instance.get_dynamic_partitions("sessions")

    result = archive_sessions(pg_instance, engine, 30)
    assert result.archived == [old], result  # the 1-day-old session stays
    sessions_now = pg_instance.get_dynamic_partitions("sessions")
    assert old not in sessions_now and recent in sessions_now
    assert status(pg_instance, old) == {"raw_iq": {}, "receiver_metrics": {}, "session_summary": {}}
    record = get_session(engine, old)
    assert (record.status, record.archived_from_status) == ("archived", before["session"])
    # Nothing deleted: objects, rows, and — Dagster's behaviour — the materialization events.
    assert objects(s3_client, old) == before["objects"]
    assert rows(engine, old) == before["rows"]
    assert event_count(pg_instance, "raw_iq", _partition_keys(pg_instance, old)) == events_before

    restored = restore_sessions(pg_instance, engine, [old], iq_store=None)
    # Same instance: the event log still had everything, so re-adding the key restored the
    # status with the very same events (same storage ids) and nothing was re-reported.
    assert restored.reported == {old: 0} and not restored.problems
    assert status(pg_instance, old) == before["status"]
    assert get_session(engine, old).status == before["session"]
    assert objects(s3_client, old) == before["objects"] and rows(engine, old) == before["rows"]

    # A backfill of receiver_metrics over the restored session (one range run, as the
    # single-run backfill policy launches it): reads raw_iq back from S3, upserts the rows.
    for job_name, tags in session_runs(pg_instance, engine, old):  # one range: the session's captures
        if job_name == "session_job":
            backfill = defs.get_job_def("session_job").execute_in_process(
                instance=pg_instance, tags={k: v for k, v in tags.items() if k.startswith("dagster/")},
                asset_selection=[AssetKey("receiver_metrics")], raise_on_error=False)
            assert backfill.success
    after = status(pg_instance, old)
    assert set(after["receiver_metrics"]) == set(before["status"]["receiver_metrics"])
    assert all(after["receiver_metrics"][k] > v for k, v in before["status"]["receiver_metrics"].items())
    assert after["raw_iq"] == before["status"]["raw_iq"]
    assert [r[:1] + r[2:] for r in rows(engine, old)] == [r[:1] + r[2:] for r in before["rows"]]


def test_restore_into_an_instance_without_the_events_reports_from_s3_verified(env, recorded, s3_client):
    """A new instance (event log lost / migrated): the status is re-reported from S3 (SHA-256
    verified) and TimescaleDB; a damaged capture is refused and named."""
    from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

    from heimdall_pipeline.bench.scale import private_dagster_home
    from heimdall_pipeline.db.sessions_repo import mark_archived
    from heimdall_pipeline.lifecycle import restore_sessions
    from heimdall_pipeline.resources import build_resources
    from heimdall_pipeline.storage.layout import iq_object_key

    engine, _ = env
    iq_store = build_resources(os.environ)["iq_store"]
    old, _recent = recorded
    mark_archived(engine, [old])  # whatever the order tests ran in, the session is archived here
    with private_dagster_home("heimdall_lifecycle2") as (home, _):
        with DagsterInstance.from_config(str(home)) as fresh:
            result = restore_sessions(fresh, engine, [old], iq_store=iq_store)
            assert not result.problems and result.from_event_log == {old: 0}
            assert result.reported[old] == 3 + 3 + 1
            st = status(fresh, old)
            assert len(st["raw_iq"]) == 3 and len(st["receiver_metrics"]) == 3 and len(st["session_summary"]) == 1
            records = fresh.fetch_materializations(
                AssetRecordsFilter(asset_key=AssetKey("raw_iq"), asset_partitions=[capture_key(old, "f5len")]), limit=5).records
            metadata = records[0].asset_materialization.metadata
            assert metadata["restored_from"].value == "s3" and metadata["capture_status"].value == "stored"
            head = s3_client.head_object(Bucket=iq_store.bucket, Key=iq_object_key(old, "f5len"))
            assert metadata["sha256"].value == head["Metadata"]["sha256"]
            assert capture_key(old, "hb9sl") not in st["raw_iq"]  # not requested: no partition reported

    # Damage one stored capture (a new object version), restore into another new instance.
    mark_archived(engine, [old])
    key = iq_object_key(old, "ph0m")
    original = s3_client.get_object(Bucket=iq_store.bucket, Key=key)["Body"].read()
    damaged = bytearray(original)
    damaged[-1] ^= 0xFF
    s3_client.put_object(Bucket=iq_store.bucket, Key=key, Body=bytes(damaged))
    try:
        with DagsterInstance.ephemeral() as other:
            result = restore_sessions(other, engine, [old], iq_store=iq_store, log=lambda *_: None)
            assert list(result.problems) == [capture_key(old, "ph0m")] and "sha256" in result.problems[capture_key(old, "ph0m")]
            st = status(other, old)
            assert capture_key(old, "ph0m") not in st["raw_iq"] and capture_key(old, "f5len") in st["raw_iq"]
    finally:
        s3_client.put_object(Bucket=iq_store.bucket, Key=key, Body=original)


def test_archive_never_touches_a_session_with_a_run_in_progress(env, pg_instance, recorded, defs):
    from dagster import DagsterRunStatus

    from heimdall_pipeline.db.sessions_repo import mark_restored
    from heimdall_pipeline.lifecycle import archive_sessions, restore_sessions

    engine, _ = env
    old, _recent = recorded
    if old not in pg_instance.get_dynamic_partitions("sessions"):
        restore_sessions(pg_instance, engine, [old])
    mark_restored(engine, [old])
    run = pg_instance.create_run_for_job(defs.get_job_def("session_analysis_job"), status=DagsterRunStatus.STARTED,
                                         tags={"heimdall/session": old})
    result = archive_sessions(pg_instance, engine, 30)
    assert result.skipped_in_progress == [old] and result.archived == []
    assert old in pg_instance.get_dynamic_partitions("sessions")
    pg_instance.report_run_failed(pg_instance.get_run_by_id(run.run_id))
    result = archive_sessions(pg_instance, engine, 30)
    assert result.archived == [old] and old not in pg_instance.get_dynamic_partitions("sessions")


def test_cli_and_scheduled_job(env, pg_instance, recorded, defs, capsys):
    """`heimdall session archive/restore` and archive_sessions_job on the same instance."""
    from heimdall_pipeline import cli
    from heimdall_pipeline.db.sessions_repo import get_session

    engine, _ = env
    old, recent = recorded
    assert cli.main(["session", "restore", old]) == 0
    assert old in pg_instance.get_dynamic_partitions("sessions") and get_session(engine, old).status != "archived"
    assert cli.main(["session", "archive", "--older-than-days", "30", "--dry-run"]) == 0
    assert f"would archive 1 session(s) older than 30 days: {old}" in capsys.readouterr().out

    schedule = defs.get_schedule_def("archive_schedule")
    assert schedule.default_status.value == "STOPPED"
    job = defs.get_job_def("archive_sessions_job")
    result = job.execute_in_process(instance=pg_instance, run_config={
        "ops": {"archive_sessions_op": {"config": {"older_than_days": 30}}}})
    assert result.success and result.output_for_node("archive_sessions_op")["archived"] == [old]
    assert old not in pg_instance.get_dynamic_partitions("sessions")
    assert recent in pg_instance.get_dynamic_partitions("sessions")
    assert get_session(engine, old).status == "archived"
