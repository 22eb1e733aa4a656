"""An instance made by main 4ef43da (sessions × receivers partitions, `not_requested` rows) is
brought into capture partitions by `heimdall db migrate`, and its session stays readable.

The old side is the real thing: the code of commit 4ef43da (`git archive`, run with this
environment's libraries) creates its schema and records a session through its own CLI on a
scratch database and a private Dagster instance; then this code migrates both.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from io import BytesIO

import pytest

from heimdall_pipeline import settings
from heimdall_pipeline.partitions import capture_key
from heimdall_pipeline_tests.integration.db_fixtures import scratch_database

LEGACY_COMMIT = "4ef43da"
RECEIVERS = ["f5len", "hb9q"]


@pytest.fixture(scope="module")
def legacy_source(tmp_path_factory):
    """The package as it was at LEGACY_COMMIT, unpacked from this repository's history."""
    archive = subprocess.run(["git", "-C", str(settings.REPO_ROOT), "archive", LEGACY_COMMIT, "heimdall_pipeline"],
                             capture_output=True, check=True).stdout
    target = tmp_path_factory.mktemp("legacy")
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def legacy_cli(source, env: dict, *args: str) -> str:
    result = subprocess.run([sys.executable, "-c", "import sys; from heimdall_pipeline.cli import main; sys.exit(main())",
                             *args], env={**env, "PYTHONPATH": str(source)}, cwd=source, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_db_migrate_brings_a_4ef43da_instance_into_capture_partitions(embedded_services, legacy_source, monkeypatch):
    import sqlalchemy as sa
    from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

    from heimdall_pipeline.bench.scale import private_dagster_home
    from heimdall_pipeline.cli import main
    from heimdall_pipeline.db.captures_repo import outcomes_for_session
    from heimdall_pipeline.db.measurements_repo import measurements_for_session
    from heimdall_pipeline.db.migrations import forget_schema
    from heimdall_pipeline.db.sessions_repo import get_session
    from heimdall_pipeline.lifecycle import legacy_capture_key

    settings.load_embedded_env()
    with scratch_database(timescaledb=True, migrated=False, prefix="heimdall_upgrade") as engine, \
            private_dagster_home("heimdall_upgrade") as (home, _):
        url = engine.url.render_as_string(hide_password=False)
        env = {**os.environ, "HEIMDALL_DATABASE_URL": url, "DAGSTER_HOME": str(home),
               "HEIMDALL_HOME": str(settings.heimdall_home())}
        key = f"up{os.urandom(3).hex()}"
        legacy_cli(legacy_source, env, "session", "request", "--freq", "7.1e6", "--duration", "1", "--source",
                   "simulated", "--receivers", ",".join(RECEIVERS), "--key", key)
        legacy_cli(legacy_source, env, "session", "run", key)
        with engine.begin() as conn:
            version = conn.execute(sa.text("SELECT max(version) FROM schema_migrations")).scalar()
            # main wrote a 'not_requested' row for every unrequested receiver a run's range spanned
            # (a range run from the UI or a backfill over the sessions × receivers rectangle)
            conn.execute(sa.text("INSERT INTO session_captures (session_key, receiver_id, status) "
                                 "VALUES (:k, 'ph0m', 'not_requested'), (:k, 'g0mjw', 'not_requested')"), {"k": key})
            statuses = dict(conn.execute(sa.text("SELECT status, count(*) FROM session_captures WHERE session_key = :k "
                                                 "GROUP BY status"), {"k": key}).all())
        assert version == 6 and statuses == {"stored": 2, "not_requested": 2}
        with DagsterInstance.from_config(str(home)) as instance:
            assert set(instance.get_dynamic_partitions("receivers")) >= set(RECEIVERS)
            legacy_events = {k: r for k, r in ((r.partition_key, r) for r in instance.fetch_materializations(
                AssetRecordsFilter(asset_key=AssetKey("raw_iq"),
                                   asset_partitions=[legacy_capture_key(key, rid) for rid in RECEIVERS]),
                limit=10).records)}
        assert set(legacy_events) == {legacy_capture_key(key, rid) for rid in RECEIVERS}
        with engine.connect() as conn:  # read by SQL: this code's models expect columns main lacks
            rows_before = sorted(tuple(r) for r in conn.execute(sa.text(
                "SELECT receiver_id, snr_db FROM measurements WHERE session_key = :k"), {"k": key}))

        # This code: `heimdall db migrate` on the same database and instance.
        for name, value in (("HEIMDALL_DATABASE_URL", url), ("DAGSTER_HOME", str(home))):
            monkeypatch.setenv(name, value)
        forget_schema(engine)
        assert main(["db", "migrate"]) == 0
        with engine.connect() as conn:
            statuses = dict(conn.execute(sa.text("SELECT status, count(*) FROM session_captures WHERE session_key = :k "
                                                 "GROUP BY status"), {"k": key}).all())
        assert statuses == {"stored": 2}  # rows for the requested receivers only
        assert set(outcomes_for_session(engine, key)) == set(RECEIVERS)
        assert sorted((r.receiver_id, r.snr_db) for r in measurements_for_session(engine, key)) == rows_before
        assert get_session(engine, key).status == "succeeded"
        with DagsterInstance.from_config(str(home)) as instance:
            assert instance.get_dynamic_partitions("receivers") == []  # the old dimension is gone
            captures = instance.get_dynamic_partitions("captures")
            assert captures == [capture_key(key, rid) for rid in RECEIVERS]
            for asset in ("raw_iq", "receiver_metrics"):
                moved = instance.fetch_materializations(AssetRecordsFilter(
                    asset_key=AssetKey(asset), asset_partitions=captures), limit=10).records
                assert {r.partition_key for r in moved} == set(captures), asset
                for record in moved:
                    metadata = record.asset_materialization.metadata
                    rid = record.partition_key.split(".")[1]
                    assert metadata["migrated_from_partition"].value == legacy_capture_key(key, rid)
                    if asset == "raw_iq":  # the lineage: the run that recorded it, and its metadata
                        old = legacy_events[legacy_capture_key(key, rid)]
                        assert metadata["migrated_from_run"].value == old.run_id
                        assert metadata["sha256"].value == old.asset_materialization.metadata["sha256"].value
            # a second migrate has nothing left to do
            assert main(["db", "migrate"]) == 0
            assert instance.get_dynamic_partitions("captures") == captures
