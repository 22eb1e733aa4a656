"""Dagster's storage keeps its connections (heimdall_pipeline/instance_storage.py), on the embedded
PostgreSQL through the project's dagster.yaml: in the process that loads the instance and in one
rebuilt from its reference (a run worker's), over one whole session, and after dagster-webserver
replaces the pool with its own."""

from __future__ import annotations

import contextlib
import os

import sqlalchemy as sa
import yaml
from dagster import DagsterInstance

from heimdall_pipeline.instance_storage import (
    PooledPostgresEventLogStorage, PooledPostgresRunStorage, PooledPostgresScheduleStorage,
)
from heimdall_pipeline.runner import run_session
from heimdall_pipeline.session_requests import request_session

POOLED = [PooledPostgresRunStorage, PooledPostgresEventLogStorage, PooledPostgresScheduleStorage]


def storage_classes(instance: DagsterInstance) -> list[type]:
    return [type(part) for part in (instance.run_storage, instance.event_log_storage, instance.schedule_storage)]


@contextlib.contextmanager
def kept_events(target, name: str, keep):
    """What `keep(*arguments)` returns for each SQLAlchemy event `name` of `target` while inside
    (None: not kept)."""
    kept: list = []

    def on_event(*arguments) -> None:
        item = keep(*arguments)
        if item is not None:
            kept.append(item)

    sa.event.listen(target, name, on_event)
    try:
        yield kept
    finally:
        sa.event.remove(target, name, on_event)


def connections_to_dagster_database(home=None):
    """Counts the new connections this process opens to Dagster's database (not Heimdall's): that
    of the embedded DAGSTER_HOME, or of a private one."""
    database = (yaml.safe_load((home / "dagster.yaml").read_text())["storage"]["custom"]["config"]["postgres_db"]["db_name"]
                if home else os.environ["DAGSTER_PG_DB"])
    return kept_events(sa.pool.Pool, "connect",
                       lambda dbapi_connection, _record: database if dbapi_connection.info.dbname == database else None)


def test_the_instance_of_dagster_yaml_pools_also_when_rebuilt_from_its_reference(embedded_services):
    with DagsterInstance.get() as instance:
        assert storage_classes(instance) == POOLED
        with DagsterInstance.from_ref(instance.get_ref()) as run_worker_instance:  # how a run worker loads it
            assert storage_classes(run_worker_instance) == POOLED
            run_worker_instance.get_run_records(limit=1)


def test_a_new_database_gets_dagsters_schema_and_an_existing_one_three_connections(embedded_services):
    from heimdall_pipeline.bench.scale import private_dagster_home

    with private_dagster_home("heimdall_storage") as (home, _db_name):
        with DagsterInstance.from_config(str(home)) as instance:  # a new database: dagster-postgres creates it all
            assert storage_classes(instance) == POOLED
            assert instance.get_run_records(limit=1) == []
            assert instance.event_log_storage.alembic_version() is not None
        with connections_to_dagster_database(home) as opened:
            with DagsterInstance.from_config(str(home)) as instance:
                assert instance.get_run_records(limit=1) == []
        # dagster-postgres alone opens two per storage to look for its tables, then one per call
        assert len(opened) == 3, opened


def test_one_session_opens_a_handful_of_connections_not_one_per_storage_call(embedded_services, engine):
    key = request_session(engine, requested_by="test", center_frequency_hz=7.1e6, duration_s=1).session_key
    with connections_to_dagster_database() as opened:
        with DagsterInstance.get() as instance:
            result = run_session(instance, engine, key)
    assert result.status == "succeeded", result
    # measured: 5 (one kept per storage, and the instance the reconciler opens); a connection per
    # storage call, as dagster-postgres does outside the webserver, was 502
    assert 3 <= len(opened) <= 20, f"{len(opened)} connections to Dagster's database for one session"


def test_tables_that_exist_are_remembered_and_a_missing_one_is_seen_once_created(embedded_services):
    probe = "heimdall_test_table_probe"
    with DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        assert storage.has_table("event_logs")
        with connections_to_dagster_database() as opened:
            assert storage.has_table("event_logs")
        assert opened == []  # the kept connection answered
        assert not storage.has_table(probe)
        with storage._engine.connect() as connection:  # a migration adds the table
            connection.execute(sa.text(f"CREATE TABLE {probe} (id integer)"))
        try:
            assert storage.has_table(probe)
        finally:
            with storage._engine.connect() as connection:
                connection.execute(sa.text(f"DROP TABLE {probe}"))


def statements(about=lambda statement: True):
    """The statements this process sends (those `about` picks)."""
    return kept_events(sa.engine.Engine, "before_cursor_execute",
                       lambda _conn, _cursor, statement, *_: statement if about(statement) else None)


def catalog_queries():
    """How SQLAlchemy's inspector looks for tables and columns."""
    return statements(lambda statement: "pg_catalog" in statement or "information_schema" in statement)


def test_the_catalog_is_asked_once_per_table_and_column_not_on_every_event(embedded_services, engine):
    """Dagster looks up the columns of its tables on every run creation, run event and
    asset-record read; an instance asks once (measured: 36 catalog queries per session before,
    7 for an instance's first session, none after)."""
    keys = [request_session(engine, requested_by="test", center_frequency_hz=7.1e6, duration_s=1).session_key
            for _ in range(2)]
    with DagsterInstance.get() as instance:
        with catalog_queries() as first:
            assert run_session(instance, engine, keys[0]).status == "succeeded"
        with catalog_queries() as second:
            assert run_session(instance, engine, keys[1]).status == "succeeded"
    assert len(first) <= 12, first
    assert second == []


def test_dynamic_partition_keys_are_read_once_and_then_only_what_changed(embedded_services):
    """Each listing equals what the table holds, after other processes add keys, delete one, or
    commit a row below the newest id already read; an unchanged list is not read again."""
    from dagster._core.storage.event_log.schema import DynamicPartitionsTable

    name = f"test_partitions_{os.getpid()}"

    def in_table(storage) -> list[str]:
        with storage.index_connection() as connection:
            return [row[0] for row in connection.execute(
                sa.select(DynamicPartitionsTable.c.partition)
                .where(DynamicPartitionsTable.c.partitions_def_name == name).order_by(DynamicPartitionsTable.c.id))]

    with DagsterInstance.get() as ours, DagsterInstance.get() as other:  # another process's instance
        try:
            ours.add_dynamic_partitions(name, [f"k{i:05d}" for i in range(3000)])
            assert ours.get_dynamic_partitions(name) == in_table(ours.event_log_storage)
            with statements() as sent:
                assert len(ours.get_dynamic_partitions(name)) == 3000
            assert not any("ORDER BY" in s and "id >" not in s for s in sent), sent  # not the whole list again
            other.add_dynamic_partitions(name, ["late-1", "late-2"])
            assert ours.get_dynamic_partitions(name)[-2:] == ["late-1", "late-2"]
            with ours.event_log_storage.index_connection() as connection:
                gap = connection.execute(sa.select(DynamicPartitionsTable.c.id).where(
                    DynamicPartitionsTable.c.partitions_def_name == name,
                    DynamicPartitionsTable.c.partition == "k00010")).scalar_one()
            other.delete_dynamic_partition(name, "k00010")
            assert ours.get_dynamic_partitions(name) == in_table(ours.event_log_storage)
            with ours.event_log_storage.index_connection() as connection:  # a row committed below the newest id
                connection.execute(DynamicPartitionsTable.insert().values(id=gap, partitions_def_name=name,
                                                                          partition="in-the-gap"))
            assert ours.get_dynamic_partitions(name) == in_table(ours.event_log_storage)
            assert ours.get_dynamic_partitions(name)[10] == "in-the-gap"
        finally:
            with ours.event_log_storage.index_connection() as connection:
                connection.execute(DynamicPartitionsTable.delete().where(DynamicPartitionsTable.c.partitions_def_name == name))
        assert ours.get_dynamic_partitions(name) == []


def test_the_webservers_own_pool_replaces_and_closes_ours(embedded_services):
    with DagsterInstance.get() as instance:
        instance.get_run_records(limit=1)
        ours = instance.run_storage._engine
        assert ours.pool.checkedin() == 1  # kept after the call
        instance.optimize_for_webserver(statement_timeout=5000, pool_recycle=3600, max_overflow=20)
        assert instance.run_storage._engine is not ours
        assert ours.pool.checkedin() == 0  # closed, not left open beside the new pool
        instance.get_run_records(limit=1)
