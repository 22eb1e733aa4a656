"""Schema migrations: the Alembic revisions in `db/alembic/versions/`, run by `heimdall db migrate`.

The SQLAlchemy models (`models.py`) are the schema; a schema change is a model change plus an
Alembic revision (`alembic revision --autogenerate`, see docs/architecture.md), and a test checks
that autogenerate finds no difference between the models and head.

`migrate(engine)` runs in ONE transaction (PostgreSQL DDL is transactional) that first takes a
transaction-scoped advisory lock, so two migrators at once serialise: the second waits, then finds
the database at head and applies nothing. Then:

1. A database made by the hand-written migrator that came before Alembic (its `schema_migrations`
   table at version 6, the schema of the baseline revision) is adopted in place: stamped at the
   baseline, rows kept. An older hand-written version is refused (it was never released without
   version 6 following it).
2. `alembic upgrade head`.
3. TimescaleDB features (`timescale.apply_timescale`): not a revision, they depend on the server.

Nothing else migrates: runs and commands call `check_schema(engine)` (through
`resources.HeimdallDatabase.engine()`), which raises `SchemaNotCurrentError` naming
`heimdall db migrate` when the database is not at head.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from heimdall_pipeline.db.timescale import TimescaleReport, TimescaleSettings, apply_timescale

log = logging.getLogger("heimdall.db")

ALEMBIC_DIR = Path(__file__).resolve().parent / "alembic"
BASELINE_REVISION = "0001"
# The hand-written migrator's bookkeeping (before Alembic) and its last version = the baseline.
LEGACY_VERSION_TABLE = "schema_migrations"
LEGACY_FINAL_VERSION = 6
# pg_advisory_xact_lock key shared by every heimdall migrator ("HEIMDALL" in ASCII, as a bigint)
MIGRATION_LOCK_KEY = 0x4845494D44414C4C
MIGRATE_COMMAND = "heimdall db migrate"
BASELINE_TABLES = ("websdrs", "sessions", "session_captures", "measurements", "localizations")


class SchemaNotCurrentError(RuntimeError):
    """The database is not at the revision this code needs (unmigrated, outdated or newer)."""


class LegacySchemaError(RuntimeError):
    """A database in a state `migrate` cannot adopt (hand-written version < 6, or unversioned tables)."""


@dataclass
class SchemaReport:
    database: str
    revision: str  # the database's revision after the call (= head)
    applied_revisions: list[str]  # applied by this call, oldest first (empty when already at head)
    timescale: TimescaleReport
    adopted_legacy_version: int | None = None  # the hand-written version adopted by this call

    @property
    def hypertables(self) -> list[str]:
        return self.timescale.hypertables

    def summary(self) -> str:
        parts = [f"schema at revision {self.revision} (head)"]
        if self.adopted_legacy_version is not None:
            parts.append(f"adopted the hand-written schema v{self.adopted_legacy_version} "
                         f"(stamped at baseline {BASELINE_REVISION})")
        if self.applied_revisions:
            parts.append(f"applied {', '.join(self.applied_revisions)}")
        return "; ".join(parts + [self.timescale.summary()])


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """Alembic's configuration for the revisions shipped in the package; `connection` is the one the
    revisions run on (env.py uses it; without one env.py connects to HEIMDALL_DATABASE_URL)."""
    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.attributes["connection"] = connection
    return config


@functools.cache
def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    heads = script_directory().get_heads()
    if len(heads) != 1:  # two revisions with the same down_revision (parallel branches merged)
        raise RuntimeError(f"the Alembic revisions have {len(heads)} heads ({', '.join(sorted(heads))}): "
                           "chain them (set one's down_revision to the other) or `alembic merge heads`")
    return heads[0]


def current_revision(conn: sa.Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _database(conn: sa.Connection) -> str:
    url = conn.engine.url
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database}"


def _legacy_version(conn: sa.Connection) -> int | None:
    """The hand-written migrator's version, or None when its table is absent."""
    if not sa.inspect(conn).has_table(LEGACY_VERSION_TABLE):
        return None
    return conn.execute(sa.text(f"SELECT max(version) FROM {LEGACY_VERSION_TABLE}")).scalar() or 0


def _adopt_legacy(conn: sa.Connection, config: Config) -> int | None:
    """Stamps the baseline on a database made by the hand-written migrator; refuses what it cannot adopt."""
    if current_revision(conn) is not None:
        return None
    database = _database(conn)
    version = _legacy_version(conn)
    if version is None:
        tables = set(sa.inspect(conn).get_table_names()) & set(BASELINE_TABLES)
        if tables:
            raise LegacySchemaError(
                f"database {database} has Heimdall tables ({', '.join(sorted(tables))}) but no version table "
                "(neither alembic_version nor schema_migrations): it was not made by `heimdall db migrate`; "
                "migrate into an empty database and copy the rows over")
        return None
    if version != LEGACY_FINAL_VERSION:
        raise LegacySchemaError(
            f"database {database} is at the hand-written schema version {version}; only version "
            f"{LEGACY_FINAL_VERSION} (the last before Alembic) is adopted: run `heimdall db migrate` of a "
            "heimdall from before the Alembic conversion first, then this one")
    command.stamp(config, BASELINE_REVISION)
    log.info("database %s: adopted the hand-written schema v%d, stamped at Alembic baseline %s",
             database, version, BASELINE_REVISION)
    return version


def migrate(engine: sa.Engine, settings: TimescaleSettings | None = None) -> SchemaReport:
    """Brings the schema to head (idempotent, safe concurrently); returns what it found and did."""
    settings = settings or TimescaleSettings.from_env()
    head = head_revision()
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        config = alembic_config(conn)
        adopted = _adopt_legacy(conn, config)
        before = current_revision(conn)
        command.upgrade(config, "head")
        after = current_revision(conn)
        applied = [] if before == after else [
            rev.revision for rev in script_directory().iterate_revisions(after, before or "base")][::-1]
        for revision in applied:
            log.info("applied schema revision %s to database %s", revision, _database(conn))
        timescale = apply_timescale(conn, settings)
        report = SchemaReport(database=_database(conn), revision=after or head, applied_revisions=applied,
                              timescale=timescale, adopted_legacy_version=adopted)
    _current.add(_cache_key(engine))
    return report


_current: set[str] = set()
_current_lock = threading.Lock()


def _cache_key(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def check_schema(engine: sa.Engine) -> None:
    """Raises SchemaNotCurrentError unless the database is at head; remembered per process once it is."""
    key = _cache_key(engine)
    if key in _current:
        return
    with _current_lock:
        if key in _current:
            return
        head = head_revision()
        with engine.connect() as conn:
            database = _database(conn)
            revision = current_revision(conn)
            legacy = _legacy_version(conn) if revision is None else None
        if revision == head:
            _current.add(key)
            return
        if revision is None and legacy is not None:
            state = f"was made by the hand-written migrator (schema v{legacy}) and is not yet under Alembic"
        elif revision is None:
            state = "is not migrated (no alembic_version)"
        elif revision not in {rev.revision for rev in script_directory().walk_revisions()}:
            raise SchemaNotCurrentError(
                f"database {database} is at schema revision {revision}, which this heimdall does not know "
                f"(head {head}): a newer heimdall migrated it; run that version")
        else:
            state = f"is at schema revision {revision}, this heimdall needs {head}"
        raise SchemaNotCurrentError(f"database {database} {state}: run `{MIGRATE_COMMAND}`")


def forget_schema(engine: sa.Engine) -> None:
    """Forgets that this engine's database was found current (for tests that rebuild a database)."""
    with _current_lock:
        _current.discard(_cache_key(engine))


__all__ = [
    "BASELINE_REVISION", "LegacySchemaError", "SchemaNotCurrentError", "SchemaReport", "alembic_config",
    "check_schema", "forget_schema", "head_revision", "migrate",
]
