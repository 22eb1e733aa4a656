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
failed call. The event log also remembers which of its tables exist: it asks on every asset
event, from inside the event's own connection, so each answer took a second connection.
"""

from __future__ import annotations

from typing import Any, Mapping

import sqlalchemy as sa
from dagster._core.storage.base_storage import DagsterStorage
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


class PooledPostgresRunStorage(_KeepsConnection, PostgresRunStorage):
    plain, checked_tables = PostgresRunStorage, frozenset({"runs", "instance_info"})


class PooledPostgresScheduleStorage(_KeepsConnection, PostgresScheduleStorage):
    plain, checked_tables = PostgresScheduleStorage, frozenset({"jobs"})


class PooledPostgresEventLogStorage(_KeepsConnection, PostgresEventLogStorage):
    plain, checked_tables = PostgresEventLogStorage, frozenset({"event_logs"})

    def __init__(self, *args, **kwargs):
        self._existing_tables: set[str] = set()
        super().__init__(*args, **kwargs)

    def has_table(self, table_name: str) -> bool:
        # A table that exists stays (migrations add tables, never drop them); a missing one is
        # asked again, so a migration that adds it is seen.
        if table_name not in self._existing_tables:
            if not super().has_table(table_name):
                return False
            self._existing_tables.add(table_name)
        return True


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
