"""Integration tests of heimdall_pipeline.db against the embedded PostgreSQL + TimescaleDB.

Each module-scoped fixture is a scratch database dropped at the end; nothing touches the real
`heimdall` database.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from heimdall_pipeline.db import measurements_repo as mrepo
from heimdall_pipeline.db import receivers_repo as rrepo
from heimdall_pipeline.db import sessions_repo as srepo
from heimdall_pipeline.db.engine import make_engine
from heimdall_pipeline.db import models
from heimdall_pipeline.db.migrations import head_revision, migrate, script_directory
from heimdall_pipeline.db.timescale import TimescaleSettings, plan_features
from heimdall_pipeline.receivers import DEFAULT_RECEIVERS, InvalidReceiverError, Receiver
from heimdall_pipeline.sessions import Session
from heimdall_pipeline_tests.integration.db_fixtures import (  # noqa: F401  (fixtures)
    scratch_database,
    scratch_engine,
    scratch_engine_plain,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


def a_session(session_key: str, **fields) -> Session:
    return Session(session_key=session_key, center_frequency_hz=7.1e6, duration_s=10.0,
                   receiver_ids=("f5len", "hb9q"), source_kind="simulated", requested_by="tests", **fields)


def _m(session: str, receiver: str, t: datetime, **kw) -> mrepo.MeasurementRow:
    values = dict(time=t, session_key=session, receiver_id=receiver, frequency_mhz=7.1,
                  sample_rate_khz=12.0, samples_count=120000, snr_db=12.5, psd_dbm_hz=-120.0,
                  frequency_offset_hz=3.0, signal_power_dbm=-90.0, noise_power_dbm=-102.5,
                  signal_detected=True, iq_data_path=f"sessions/{session}/websdr_{receiver}.npy",
                  metadata_json={"gps": True})
    values.update(kw)
    return mrepo.MeasurementRow(**values)


# ---------------------------------------------------------------- migrations / TimescaleDB


def all_revisions() -> list[str]:
    return [rev.revision for rev in script_directory().walk_revisions()][::-1]


def test_migrate_is_idempotent_and_reports_apache_timescaledb():
    with scratch_database(timescaledb=True, migrated=False) as engine:
        first = migrate(engine)
        second = migrate(engine)
        with engine.connect() as conn:
            recorded = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    assert first.applied_revisions == all_revisions() and all_revisions()[-1] == head_revision()
    assert second.applied_revisions == [] and second.revision == head_revision()
    assert recorded == [head_revision()]

    timescale = second.timescale
    assert timescale.timescaledb_version and timescale.timescaledb_version[0].isdigit()
    assert timescale.license == "apache"
    assert set(second.hypertables) == {"measurements", "localizations"}
    assert timescale.feature_enabled("hypertable")
    for feature in ("retention", "compression", "continuous_aggregate"):
        assert not timescale.feature_enabled(feature)
        assert "timescale license" in timescale.skipped[feature]


def test_hypertables_exist_with_seven_day_chunks(scratch_engine):
    with scratch_engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT h.hypertable_name, d.column_name, d.time_interval "
            "FROM timescaledb_information.hypertables h JOIN timescaledb_information.dimensions d "
            "USING (hypertable_schema, hypertable_name) ORDER BY 1")).all()
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("localizations", "time", timedelta(days=7)), ("measurements", "time", timedelta(days=7))]


def test_plain_postgresql_fallback_without_extension(caplog):
    caplog.set_level(logging.INFO, logger="heimdall.db")
    with scratch_database(timescaledb=False, migrated=False) as engine:
        report = migrate(engine).timescale
        assert report.timescaledb_version is None and report.license is None
        assert report.hypertables == []
        assert "permission denied" in report.skipped["hypertable"]
        assert set(report.skipped) == {"hypertable", "retention", "compression", "continuous_aggregate"}
        messages = [r.getMessage() for r in caplog.records if r.name == "heimdall.db"]
        assert any("TimescaleDB extension absent" in m and "plain PostgreSQL" in m for m in messages), messages
        # logged once per process and database
        caplog.clear()
        migrate(engine)
        assert not any("TimescaleDB extension absent" in r.getMessage() for r in caplog.records)
        # the repositories work on the plain table
        assert mrepo.upsert_measurements(engine, [_m("plain", "f5len", T0)]) == 1
        assert mrepo.count_measurements(engine) == 1
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")).scalar() == 0


def test_concurrent_migrate_applies_once():
    with scratch_database(timescaledb=True, migrated=False) as engine:
        barrier = threading.Barrier(2)
        reports, errors = [], []

        def run():
            try:
                barrier.wait()
                reports.append(migrate(engine))
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert sorted(len(r.applied_revisions) for r in reports) == [0, len(all_revisions())]
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [head_revision()]
        assert all(set(r.hypertables) == {"measurements", "localizations"} for r in reports)


def test_plan_features_full_license_and_disabled_retention():
    settings = TimescaleSettings()
    wanted, skipped = plan_features("2.19.3", "timescale", settings)
    assert wanted == ["hypertable", "retention", "compression", "continuous_aggregate"] and skipped == {}
    wanted, skipped = plan_features("2.19.3", "timescale", dataclasses.replace(settings, retention=None))
    assert "retention" not in wanted and "disabled" in skipped["retention"]
    wanted, skipped = plan_features("2.19.3", "apache", settings)
    assert wanted == ["hypertable"] and set(skipped) == {"retention", "compression", "continuous_aggregate"}


def test_timescale_settings_from_env(monkeypatch):
    monkeypatch.setenv("HEIMDALL_TSDB_CHUNK_INTERVAL_DAYS", "1")
    monkeypatch.setenv("HEIMDALL_TSDB_RETENTION_DAYS", "0")
    s = TimescaleSettings.from_env()
    assert s.chunk_interval == timedelta(days=1) and s.retention is None
    monkeypatch.setenv("HEIMDALL_TSDB_CHUNK_INTERVAL_DAYS", "abc")
    with pytest.raises(ValueError, match="HEIMDALL_TSDB_CHUNK_INTERVAL_DAYS"):
        TimescaleSettings.from_env()


def test_make_engine_is_cached_per_url(scratch_engine):
    url = scratch_engine.url.render_as_string(hide_password=False)
    assert make_engine(url) is scratch_engine
    assert make_engine(url.replace("postgresql+psycopg://", "postgresql://")) is scratch_engine
    with pytest.raises(ValueError):
        make_engine("sqlite:///x.db")


# ---------------------------------------------------------------- receivers


def test_seed_is_idempotent_and_keeps_user_edits(scratch_engine):
    assert rrepo.seed_default_receivers(scratch_engine) == len(DEFAULT_RECEIVERS) == 7
    assert rrepo.seed_default_receivers(scratch_engine) == 0
    assert [r.id for r in rrepo.list_receivers(scratch_engine)] == sorted(r.id for r in DEFAULT_RECEIVERS)
    assert rrepo.get_receiver(scratch_engine, "f5len") == next(r for r in DEFAULT_RECEIVERS if r.id == "f5len")

    edited = rrepo.update_receiver(scratch_engine, "hb9q", url="http://kiwi.example.org:8073",
                                   kind="kiwisdr", name="HB9Q real")
    assert edited.kind == "kiwisdr"
    rrepo.set_receiver_active(scratch_engine, "ph0m", False)
    assert rrepo.seed_default_receivers(scratch_engine) == 0
    assert rrepo.get_receiver(scratch_engine, "hb9q") == edited
    assert rrepo.get_receiver(scratch_engine, "ph0m").is_active is False
    assert "ph0m" not in [r.id for r in rrepo.list_receivers(scratch_engine, active_only=True)]
    assert len(rrepo.list_receivers(scratch_engine)) == 7


def test_updated_at_changes_on_update(scratch_engine):
    rrepo.seed_default_receivers(scratch_engine)
    q = sa.text("SELECT created_at, updated_at FROM websdrs WHERE id = 'g0mjw'")
    with scratch_engine.connect() as conn:
        created, before = conn.execute(q).one()
    rrepo.update_receiver(scratch_engine, "g0mjw", location_name="Bridgnorth, Shropshire")
    with scratch_engine.connect() as conn:
        created2, after = conn.execute(q).one()
    assert created2 == created and after > before


def test_invalid_receiver_refused_naming_field(scratch_engine):
    bad = Receiver(id="bad1", name="Bad", url="sim://bad1", kind="simulated", location_name="x",
                   latitude=95.0, longitude=0.0)
    with pytest.raises(InvalidReceiverError, match="latitude") as info:
        rrepo.add_receiver(scratch_engine, bad)
    assert info.value.field == "latitude"
    rrepo.seed_default_receivers(scratch_engine)
    with pytest.raises(InvalidReceiverError, match="max_channels"):
        rrepo.update_receiver(scratch_engine, "f5len", max_channels=0)
    with pytest.raises(InvalidReceiverError, match="colour"):
        rrepo.update_receiver(scratch_engine, "f5len", colour="red")
    with pytest.raises(InvalidReceiverError, match="'id'"):
        rrepo.update_receiver(scratch_engine, "f5len", id="f5len2")
    assert rrepo.get_receiver(scratch_engine, "f5len").max_channels == 4
    # the database refuses it too (check constraints), for rows written by hand
    with pytest.raises(IntegrityError):
        with scratch_engine.begin() as conn:
            conn.execute(sa.text("UPDATE websdrs SET max_channels = 0 WHERE id = 'f5len'"))


def test_unknown_and_duplicate_receivers(scratch_engine):
    rrepo.seed_default_receivers(scratch_engine)
    with pytest.raises(rrepo.UnknownReceiverError, match="nope") as info:
        rrepo.get_receiver(scratch_engine, "nope")
    assert isinstance(info.value, KeyError)
    with pytest.raises(rrepo.UnknownReceiverError):
        rrepo.set_receiver_active(scratch_engine, "nope", True)
    with pytest.raises(rrepo.UnknownReceiverError):
        rrepo.update_receiver(scratch_engine, "nope", name="x")
    with pytest.raises(rrepo.DuplicateReceiverError, match="f5len"):
        rrepo.add_receiver(scratch_engine, DEFAULT_RECEIVERS[0])


def test_sql_looking_name_stored_verbatim(scratch_engine):
    name = "x'); DROP TABLE websdrs;--"
    receiver = Receiver(id="evil1", name=name, url="sim://evil1", kind="simulated",
                        location_name="'; DELETE FROM sessions; --", latitude=1.0, longitude=2.0)
    rrepo.add_receiver(scratch_engine, receiver)
    assert rrepo.get_receiver(scratch_engine, "evil1") == receiver
    rrepo.update_receiver(scratch_engine, "evil1", name=name + " %s %(x)s")
    assert rrepo.get_receiver(scratch_engine, "evil1").name == name + " %s %(x)s"
    assert sa.inspect(scratch_engine).has_table("websdrs")


# ---------------------------------------------------------------- sessions


def test_sessions_lifecycle(scratch_engine):
    past = datetime.now(timezone.utc) - timedelta(minutes=5)
    ids = [srepo.insert_session(scratch_engine, a_session(f"lifecycle-{i}", scheduled_for=past,
                                                          transmitter={"latitude": 45.0} if i == 0 else None)).id
           for i in range(3)]
    assert ids == sorted(ids)
    future_id = srepo.insert_session(scratch_engine, a_session(
        "lifecycle-future", scheduled_for=datetime.now(timezone.utc) + timedelta(hours=1))).id
    with pytest.raises(srepo.DuplicateSessionError, match="lifecycle-0"):
        srepo.insert_session(scratch_engine, a_session("lifecycle-0"))

    record = srepo.get_session(scratch_engine, "lifecycle-0")
    assert record.status == "requested" and record.receiver_ids == ("f5len", "hb9q")
    assert record.transmitter == {"latitude": 45.0}
    assert record.scheduled_for == past and record.scheduled_for.tzinfo is not None
    assert srepo.get_session(scratch_engine, "lifecycle-1").transmitter is None
    assert srepo.get_session(scratch_engine, "missing") is None

    due = srepo.requested_sessions(scratch_engine)
    assert [r.id for r in due if r.session_key.startswith("lifecycle")] == ids  # not the future one
    assert future_id not in [r.id for r in due]
    assert [r.id for r in srepo.requested_sessions(scratch_engine, after_id=ids[0], limit=1)] == [ids[1]]

    launched = srepo.claim_launch(scratch_engine, "lifecycle-0", "run-1")
    assert launched.status == "launched" and launched.run_id == "run-1" and launched.launched_at
    assert srepo.claim_launch(scratch_engine, "lifecycle-0", "run-1").run_id == "run-1"  # the same launch again
    with pytest.raises(srepo.SessionAlreadyLaunchedError, match="already launched"):
        srepo.claim_launch(scratch_engine, "lifecycle-0", "run-2")
    assert "lifecycle-0" not in [r.session_key for r in srepo.requested_sessions(scratch_engine)]

    srepo.transition(scratch_engine, "lifecycle-0", "succeeded", reason="2 of 2 receivers measured")
    failed = srepo.transition(scratch_engine, "lifecycle-1", "failed", reason="refused: live window closed")
    assert (failed.status, failed.status_reason) == ("failed", "refused: live window closed")
    with pytest.raises(srepo.InvalidSessionStatusError):
        srepo.transition(scratch_engine, "lifecycle-0", "done")
    with pytest.raises(srepo.InvalidTransitionError, match="'requested' to 'succeeded'"):
        srepo.transition(scratch_engine, "lifecycle-2", "succeeded")  # never launched
    with pytest.raises(srepo.InvalidTransitionError, match="no longer the session's"):
        srepo.transition(scratch_engine, "lifecycle-0", "failed", if_run_id="run-0")  # an older launch
    with pytest.raises(srepo.UnknownSessionError):
        srepo.transition(scratch_engine, "missing", "failed")

    finished = srepo.list_sessions(scratch_engine, status=["succeeded", "failed"],
                                   older_than=timedelta(minutes=1))
    assert [r.session_key for r in finished] == ["lifecycle-0", "lifecycle-1"]
    assert srepo.list_sessions(scratch_engine, status="succeeded", older_than=past - timedelta(days=1)) == []
    assert len(srepo.list_sessions(scratch_engine, limit=2)) == 2

    # only finished sessions are archived; restore puts the previous status back
    assert srepo.mark_archived(scratch_engine, ["lifecycle-0", "lifecycle-1", "lifecycle-2"]) == 2
    archived = srepo.get_session(scratch_engine, "lifecycle-1")
    assert archived.status == "archived" and archived.archived_at is not None
    assert srepo.mark_restored(scratch_engine, ["lifecycle-0", "lifecycle-1"]) == 2
    assert srepo.get_session(scratch_engine, "lifecycle-0").status == "succeeded"
    restored = srepo.get_session(scratch_engine, "lifecycle-1")
    assert restored.status == "failed" and restored.archived_at is None


def test_concurrent_launch_claims_exactly_once(scratch_engine):
    srepo.insert_session(scratch_engine, a_session("race-1", scheduled_for=T0))
    barrier = threading.Barrier(4)
    results = []

    def launch(i):
        barrier.wait()
        try:
            srepo.claim_launch(scratch_engine, "race-1", f"run-{i}")
            results.append(True)
        except srepo.SessionAlreadyLaunchedError:
            results.append(False)

    threads = [threading.Thread(target=launch, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [False, False, False, True]


# ---------------------------------------------------------------- measurements


def test_upsert_twice_one_row_values_updated(scratch_engine):
    row = _m("ups-1", "f5len", T0, snr_db=None, frequency_offset_hz=None, signal_power_dbm=None,
             signal_detected=False, metadata_json={"nan": float("nan")})
    assert mrepo.upsert_measurements(scratch_engine, [row]) == 1
    stored = mrepo.measurements_for_session(scratch_engine, "ups-1")
    assert len(stored) == 1 and stored[0].snr_db is None and stored[0].metadata_json == {"nan": None}
    updated = dataclasses.replace(row, snr_db=20.0, frequency_offset_hz=1.5, signal_power_dbm=-80.0,
                                  signal_detected=True, psd_dbm_hz=float("nan"), metadata_json={"v": 2})
    assert mrepo.upsert_measurements(scratch_engine, [updated]) == 1
    stored = mrepo.measurements_for_session(scratch_engine, "ups-1")
    assert len(stored) == 1 and mrepo.count_measurements(scratch_engine, session_key="ups-1") == 1
    s = stored[0]
    assert (s.snr_db, s.frequency_offset_hz, s.signal_power_dbm, s.signal_detected) == (20.0, 1.5, -80.0, True)
    assert math.isnan(s.psd_dbm_hz) and s.metadata_json == {"v": 2} and s.time == T0


def test_batch_of_new_and_existing_keys_inserts_and_replaces(scratch_engine):
    first = _m("mix-1", "f5len", T0, snr_db=1.0)
    assert mrepo.upsert_measurements(scratch_engine, [first]) == 1  # all keys new: the COPY path
    later = [_m("mix-1", "hb9q", T0, snr_db=3.0), dataclasses.replace(first, snr_db=2.0),
             _m("mix-1", "dl0abc", T0, metadata_json=None, signal_detected=None, computed_at=None)]
    assert mrepo.upsert_measurements(scratch_engine, later) == 3  # one key exists: the merge path
    stored = {r.receiver_id: r for r in mrepo.measurements_for_session(scratch_engine, "mix-1")}
    assert {k: r.snr_db for k, r in stored.items()} == {"f5len": 2.0, "hb9q": 3.0, "dl0abc": 12.5}
    assert stored["dl0abc"].metadata_json == {} and stored["dl0abc"].signal_detected is False
    new = _m("mix-2", "f5len", T0, metadata_json=None, signal_detected=None, power_unit=None)
    assert mrepo.upsert_measurements(scratch_engine, [new]) == 1  # left-out values take the defaults
    [row] = mrepo.measurements_for_session(scratch_engine, "mix-2")
    assert (row.metadata_json, row.signal_detected, row.power_unit) == ({}, False, "dBm")
    assert row.computed_at is not None


def test_failing_batch_leaves_no_rows(scratch_engine):
    rows = [_m("atomic-1", f"r{i:03d}", T0) for i in range(50)]
    rows[25] = dataclasses.replace(rows[25], noise_power_dbm=None)  # a dBm row without its noise power, mid-batch
    with pytest.raises(IntegrityError):
        mrepo.upsert_measurements(scratch_engine, rows)  # one transaction
    assert mrepo.count_measurements(scratch_engine, session_key="atomic-1") == 0


def test_duplicate_keys_in_one_batch_last_wins(scratch_engine):
    rows = [_m("dup-1", "f5len", T0, snr_db=1.0), _m("dup-1", "f5len", T0, snr_db=2.0)]
    assert mrepo.upsert_measurements(scratch_engine, rows) == 1
    assert [r.snr_db for r in mrepo.measurements_for_session(scratch_engine, "dup-1")] == [2.0]


def test_repeated_keys_of_existing_rows_last_wins_and_are_counted_once(scratch_engine):
    assert mrepo.upsert_measurements(scratch_engine, [_m("dup-2", "f5len", T0, snr_db=1.0)]) == 1
    rows = [_m("dup-2", "f5len", T0, snr_db=2.0), _m("dup-2", "hb9q", T0, snr_db=5.0),
            _m("dup-2", "f5len", T0, snr_db=3.0), _m("dup-2", "hb9q", T0, snr_db=6.0)]
    assert mrepo.upsert_measurements(scratch_engine, rows) == 2  # the merge path, keys repeated
    stored = {r.receiver_id: r.snr_db for r in mrepo.measurements_for_session(scratch_engine, "dup-2")}
    assert stored == {"f5len": 3.0, "hb9q": 6.0}


def test_new_rows_leaving_out_a_defaulted_value_take_the_default_one_by_one(scratch_engine):
    rows = [_m("part-1", "f5len", T0, metadata_json=None), _m("part-1", "hb9q", T0, metadata_json={"x": 1})]
    assert mrepo.upsert_measurements(scratch_engine, rows) == 2  # all keys new: the COPY path
    stored = {r.receiver_id: r.metadata_json for r in mrepo.measurements_for_session(scratch_engine, "part-1")}
    assert stored == {"f5len": {}, "hb9q": {"x": 1}}


def test_bulk_upsert_speed_and_time_bucket(scratch_engine):
    n = 20_000
    receivers = [r.id for r in DEFAULT_RECEIVERS]
    rows = [_m("bulk-1", receivers[i % 7], T0 + timedelta(seconds=10 * (i // 7)), snr_db=float(i % 30))
            for i in range(n)]
    start = time.perf_counter()
    assert mrepo.upsert_measurements(scratch_engine, rows) == n
    insert_s = time.perf_counter() - start
    start = time.perf_counter()
    assert mrepo.upsert_measurements(scratch_engine, rows) == n  # all conflicts -> updates
    update_s = time.perf_counter() - start
    print(f"\nupsert_measurements: {n} new rows in {insert_s:.2f} s = {n / insert_s:,.0f} rows/s; "
          f"{n} conflicting rows in {update_s:.2f} s = {n / update_s:,.0f} rows/s")
    assert mrepo.count_measurements(scratch_engine, session_key="bulk-1") == n

    with scratch_engine.connect() as conn:
        buckets = conn.execute(sa.text(
            "SELECT time_bucket(INTERVAL '1 hour', time) AS bucket, receiver_id, count(*), "
            "avg(snr_db), min(snr_db), max(snr_db) FROM measurements WHERE session_key = 'bulk-1' "
            "GROUP BY bucket, receiver_id ORDER BY bucket, receiver_id")).all()
        chunks = conn.execute(sa.text(
            "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'measurements'")).scalar()
    assert buckets[0].bucket == T0 and sum(b[2] for b in buckets) == n
    assert {b.receiver_id for b in buckets} == set(receivers)
    assert chunks >= 1


def test_localization_upsert_and_get(scratch_engine):
    assert mrepo.get_localization(scratch_engine, "loc-1") is None
    first = mrepo.LocalizationRow(time=T0, session_key="loc-1", localizable=False, reason="only 2 receivers",
                                  receivers_used=("f5len", "hb9q"))
    mrepo.upsert_localization(scratch_engine, first)
    got = mrepo.get_localization(scratch_engine, "loc-1")
    assert got.localizable is False and got.reason == "only 2 receivers" and got.residuals is None
    assert got.receivers_used == ("f5len", "hb9q") and got.computed_at is not None
    second = mrepo.LocalizationRow(
        time=T0, session_key="loc-1", localizable=True, latitude=47.1, longitude=8.3, eirp_dbm=40.0,
        path_loss_exponent=2.1, ellipse_semi_major_km=12.0, ellipse_semi_minor_km=5.0,
        ellipse_orientation_deg=30.0, receivers_used=tuple(r.id for r in DEFAULT_RECEIVERS),
        residuals={"f5len": 0.5}, metadata_json={"solver": "lm"})
    mrepo.upsert_localization(scratch_engine, second)
    got = mrepo.get_localization(scratch_engine, "loc-1")
    assert got.localizable and got.latitude == 47.1 and got.residuals == {"f5len": 0.5} and got.reason is None
    # a new session start time replaces the old row: one localization per session
    mrepo.upsert_localization(scratch_engine, dataclasses.replace(second, time=T0 + timedelta(seconds=1)))
    with scratch_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM localizations WHERE session_key = 'loc-1'")).scalar() == 1


def test_extension_added_later_converts_plain_tables_with_data():
    from heimdall_pipeline_tests.integration.db_fixtures import _admin_engine

    with scratch_database(timescaledb=False) as engine:
        assert migrate(engine).hypertables == []
        mrepo.upsert_measurements(engine, [_m("later-1", "f5len", T0), _m("later-1", "hb9q", T0)])
        admin = _admin_engine(engine.url.database)
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql("CREATE EXTENSION timescaledb")
        finally:
            admin.dispose()
        report = migrate(engine)
        assert report.timescale.license == "apache" and set(report.hypertables) == {"measurements", "localizations"}
        assert report.applied_revisions == []
        assert mrepo.count_measurements(engine, session_key="later-1") == 2


def test_session_row_round_trip(scratch_engine):
    request = Session(session_key="real-1", center_frequency_hz=145.5e6, duration_s=5.0, receiver_ids=("f5len",),
                      source_kind="simulated", requested_by="alice", scheduled_for=T0,
                      transmitter={"latitude": 45.0, "longitude": 7.0})
    stored = srepo.insert_session(scratch_engine, request)
    assert stored.id is not None and stored.requested_at is not None and stored.status == "requested"
    assert stored == dataclasses.replace(request, id=stored.id, requested_at=stored.requested_at)
    assert srepo.get_session(scratch_engine, "real-1") == stored


def test_requested_sessions_bounded_by_a_cursor(scratch_engine):
    """What the sensor's cursor asks: new ids, and older ones requested or come due since."""
    now = datetime.now(timezone.utc)
    old = srepo.insert_session(scratch_engine, a_session("cursor-old", scheduled_for=now - timedelta(hours=2)))
    later = srepo.insert_session(scratch_engine, a_session("cursor-later", scheduled_for=now + timedelta(hours=1)))
    new = srepo.insert_session(scratch_engine, a_session("cursor-new", scheduled_for=now - timedelta(hours=2)))

    def keys(**kwargs):
        return [s.session_key for s in srepo.requested_sessions(scratch_engine, **kwargs)
                if s.session_key.startswith("cursor-")]

    assert keys(now=now) == ["cursor-old", "cursor-new"]
    assert keys(after_id=old.id, now=now) == ["cursor-new"]
    # everything up to `new` was seen at a tick after the requests: only what comes due later is new
    tick = datetime.now(timezone.utc) + timedelta(seconds=1)
    assert keys(after_id=new.id, since=tick, now=tick) == []
    assert keys(after_id=new.id, since=tick, now=now + timedelta(hours=2)) == ["cursor-later"]
    assert later.id < new.id


def test_receiver_kinds_come_from_the_source_registry_not_a_database_check(scratch_engine):
    kept = dataclasses.replace(DEFAULT_RECEIVERS[0], id="kindcheck")
    rrepo.add_receiver(scratch_engine, kept)
    with scratch_engine.begin() as conn:  # the database has no list of kinds: SQL by hand may write any
        conn.execute(sa.update(models.websdrs).where(models.websdrs.c.id == kept.id).values(kind="storedfile"))
    # the kinds are the registry's: Receiver.validated() refuses what no module provides
    with pytest.raises(InvalidReceiverError, match="'storedfile' is not a source kind"):
        rrepo.update_receiver(scratch_engine, kept.id, name="x")
