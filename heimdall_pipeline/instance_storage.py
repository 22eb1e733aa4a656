"""Dagster's PostgreSQL instance storage, keeping a connection open in every Dagster process.

dagster-postgres opens a new connection for each storage call (SQLAlchemy NullPool) in every
process but dagster-webserver, which pools through `optimize_for_webserver`; the pool settings
cannot be configured (dagster-io/dagster#33935). One connect costs ~10 ms on the embedded
PostgreSQL (SCRAM authentication, a backend started), and one 7-receiver session makes ~500
storage calls: 502 connections and 8.4 s for its two runs without a pool, 5 and 3.4 s with this
one (docs/architecture.md, "Dagster's PostgreSQL storage keeps its connections"). dagster.yaml names
`PooledPostgresStorage` instead of `postgres`, so the daemon, the code server, every run worker
and the CLI pool alike.

The pool is dagster-webserver's: one connection kept per storage, and no limit on extra ones,
which are closed when returned (what NullPool did), so a burst never waits for a connection;
a kept connection is tried before each use, so a PostgreSQL restart costs a reconnect, not a
failed call. The storages also remember which of their tables and columns exist: Dagster asks
the catalog on every asset event (from inside the event's own connection, so each answer took a
second connection), run creation, run event and asset-record read.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, Mapping, Sequence

import sqlalchemy as sa
from dagster._core.storage.base_storage import DagsterStorage
from dagster._core.storage.event_log.schema import DynamicPartitionsTable
from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage, PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage
from dagster_postgres.utils import (
    create_pg_engine, get_token_provider_from_config, pg_url_from_config, retry_pg_connection_fn,
    set_pg_statement_timeout,
)

POOL_RECYCLE_S = 3600  # dagster-webserver's default: a connection older than this is replaced
UNLIMITED_OVERFLOW = -1


def _storage_arguments(config_value: Mapping[str, Any]) -> dict[str, Any]:
    return {"postgres_url": pg_url_from_config(config_value),
            "should_autocreate_tables": config_value.get("should_autocreate_tables", True),
            "token_provider": get_token_provider_from_config(config_value)}


class _KeepsConnection:
    """A dagster-postgres storage whose engine keeps one connection from the start.

    dagster-postgres looks for its main tables when a storage is made, on two connections of
    its own; here the kept connection looks, and the dagster-postgres class is made to create and
    stamp the schema only where a table it checks for is missing (a new database)."""

    plain: type  # the dagster-postgres class
    checked_tables: frozenset[str]  # what it looks for before creating its schema

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True,
                 inst_data: ConfigurableClassData | None = None, token_provider=None):
        self._present: set[str] = set()
        super().__init__(postgres_url, False, inst_data, token_provider)
        self.should_autocreate_tables = should_autocreate_tables
        self.optimize_for_webserver(statement_timeout=0, pool_recycle=POOL_RECYCLE_S, max_overflow=UNLIMITED_OVERFLOW)
        if should_autocreate_tables:
            # retried as dagster-postgres retries it (a server still starting)
            tables = retry_pg_connection_fn(lambda: sa.inspect(self._engine).get_table_names())
            if not self.checked_tables <= set(tables):
                self.plain(postgres_url, True, None, token_provider).dispose()

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]):
        return cls(inst_data=inst_data, **_storage_arguments(config_value))

    def optimize_for_webserver(self, statement_timeout: int, pool_recycle: int, max_overflow: int) -> None:
        # dagster-postgres' pool (pool_size 1, AUTOCOMMIT, the URL's options, the statement
        # timeout), with each kept connection tried before use: after a PostgreSQL restart it
        # would otherwise fail the first call that takes it. dagster-webserver calls this again
        # with its own settings: the engine it replaces is closed.
        replaced = self._engine
        options = replaced.url.query.get("options")
        self._engine = create_pg_engine(
            self.postgres_url, self._token_provider, isolation_level="AUTOCOMMIT", pool_size=1,
            pool_recycle=pool_recycle, max_overflow=max_overflow, pool_pre_ping=True,
            **({"connect_args": {"options": options}} if options else {}))
        sa.event.listen(self._engine, "connect",
                        lambda connection, _record: set_pg_statement_timeout(connection, statement_timeout))
        replaced.dispose()

    def dispose(self) -> None:
        super().dispose()
        self._engine.dispose()

    def _remembered(self, feature: str, ask) -> bool:
        """Whether a table or column exists, asked once it does: migrations add them and never
        drop them; a missing one is asked again, so a migration that adds it is seen."""
        if feature not in self._present:
            if not ask():
                return False
            self._present.add(feature)
        return True


class PooledPostgresRunStorage(_KeepsConnection, PostgresRunStorage):
    plain, checked_tables = PostgresRunStorage, frozenset({"runs", "instance_info"})

    def has_run_stats_index_cols(self) -> bool:  # every run event and run-record read
        return self._remembered("runs.start_time+end_time", super().has_run_stats_index_cols)

    def has_backfill_id_column(self) -> bool:  # every new run
        return self._remembered("runs.backfill_id", super().has_backfill_id_column)

    def has_bulk_actions_selector_cols(self) -> bool:
        return self._remembered("bulk_actions.selector_id", super().has_bulk_actions_selector_cols)

    def has_bulk_action_job_name_column(self) -> bool:
        return self._remembered("bulk_actions.job_name", super().has_bulk_action_job_name_column)


class PooledPostgresScheduleStorage(_KeepsConnection, PostgresScheduleStorage):
    plain, checked_tables = PostgresScheduleStorage, frozenset({"jobs"})


@dataclasses.dataclass(frozen=True)
class _KnownPartitions:
    keys: tuple[str, ...]  # in id order, as Dagster lists them
    last_id: int
    id_sum: int  # with len(keys): the fingerprint of the rows they were read from


_PARTITIONS = DynamicPartitionsTable.c
_PARTITION_ROWS = sa.select(_PARTITIONS.id, _PARTITIONS.partition).order_by(_PARTITIONS.id)
_PARTITIONS_FINGERPRINT = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(_PARTITIONS.id), 0)).select_from(
    DynamicPartitionsTable)


class PooledPostgresEventLogStorage(_KeepsConnection, PostgresEventLogStorage):
    plain, checked_tables = PostgresEventLogStorage, frozenset({"event_logs"})

    def __init__(self, *args, **kwargs):
        self._known_partitions: dict[str, _KnownPartitions] = {}
        self._partitions_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def get_dynamic_partitions(self, partitions_def_name: str) -> Sequence[str]:
        # Dagster lists every key of a dynamic partitions definition several times per step of a
        # run over a range of keys (34 times per session): at 50,000 captures that is 0.1-0.3 s a
        # time. The keys read before are kept; each call reads the rows added since (ids grow)
        # and the count and id sum of all rows, and reads the whole list again when those differ
        # from what it holds (a row deleted, or one committed after a newer id was read).
        self._check_partitions_table()
        of_definition = _PARTITIONS.partitions_def_name == partitions_def_name
        with self._partitions_lock, self.index_connection() as conn:
            known = self._known_partitions.get(partitions_def_name)
            if known is not None:
                newer = conn.execute(_PARTITION_ROWS.where(of_definition, _PARTITIONS.id > known.last_id)).fetchall()
                count, id_sum = conn.execute(_PARTITIONS_FINGERPRINT.where(of_definition)).one()
                if newer:
                    known = _KnownPartitions(known.keys + tuple(row[1] for row in newer), newer[-1][0],
                                             known.id_sum + sum(row[0] for row in newer))
                if (len(known.keys), known.id_sum) != (count, int(id_sum)):
                    known = None
            if known is None:
                rows = conn.execute(_PARTITION_ROWS.where(of_definition)).fetchall()
                known = _KnownPartitions(tuple(row[1] for row in rows), rows[-1][0] if rows else 0,
                                         sum(row[0] for row in rows))
            self._known_partitions[partitions_def_name] = known
            return list(known.keys)

    def has_table(self, table_name: str) -> bool:  # every asset event
        return self._remembered(table_name, lambda: super(PooledPostgresEventLogStorage, self).has_table(table_name))

    def has_asset_key_col(self, column_name: str) -> bool:  # every asset-record read, twice
        return self._remembered(f"asset_keys.{column_name}",
                                lambda: super(PooledPostgresEventLogStorage, self).has_asset_key_col(column_name))

    def _has_asset_key_col_on_connection(self, conn, column_name: str) -> bool:
        return self._remembered(
            f"asset_keys.{column_name}",
            lambda: super(PooledPostgresEventLogStorage, self)._has_asset_key_col_on_connection(conn, column_name))


class PooledPostgresStorage(DagsterPostgresStorage):
    """`storage: custom:` in dagster.yaml, with the `postgres_db` config of `storage: postgres:`."""

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True,
                 inst_data: ConfigurableClassData | None = None, token_provider=None):
        # DagsterPostgresStorage.__init__ would build (and connect) the plain storages first.
        self._inst_data = inst_data
        self.postgres_url = postgres_url
        self.should_autocreate_tables = should_autocreate_tables
        arguments = {"postgres_url": postgres_url, "should_autocreate_tables": should_autocreate_tables,
                     "token_provider": token_provider}
        self._run_storage = PooledPostgresRunStorage(**arguments)
        self._event_log_storage = PooledPostgresEventLogStorage(**arguments)
        self._schedule_storage = PooledPostgresScheduleStorage(**arguments)
        DagsterStorage.__init__(self)

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]):
        return cls(inst_data=inst_data, **_storage_arguments(config_value))

    # What an instance rebuilt from its reference (a run worker's) loads for each part.
    def _part(self, class_name: str) -> ConfigurableClassData | None:
        return ConfigurableClassData(__name__, class_name, self.inst_data.config_yaml) if self.inst_data else None

    @property
    def event_storage_data(self) -> ConfigurableClassData | None:
        return self._part(PooledPostgresEventLogStorage.__name__)

    @property
    def run_storage_data(self) -> ConfigurableClassData | None:
        return self._part(PooledPostgresRunStorage.__name__)

    @property
    def schedule_storage_data(self) -> ConfigurableClassData | None:
        return self._part(PooledPostgresScheduleStorage.__name__)
