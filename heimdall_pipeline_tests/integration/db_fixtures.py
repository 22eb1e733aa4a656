"""Scratch PostgreSQL databases for integration tests, on the embedded server.

Use from a test module:

    from heimdall_pipeline_tests.integration.db_fixtures import scratch_engine  # noqa: F401

or from a root conftest: `pytest_plugins = ["heimdall_pipeline_tests.integration.db_fixtures"]`.

`scratch_engine` (module scope) creates `heimdall_test_<random>` owned by the app role, creates the
timescaledb extension in it as the admin, migrates it to head (`migrate_database`, what
`heimdall db migrate` does: runs never migrate) and yields an engine connected as the app role, then
drops the database. `scratch_database(timescaledb=..., migrated=...)` is the context manager behind
it; `migrated=False` gives an empty database.

`scratch_engine_plain` / `scratch_database(timescaledb=False)`: a database WITHOUT the extension in
which the app role cannot create it. TimescaleDB 2.x is a *trusted* extension, so a database owner
may create it; the plain database is therefore owned by the admin, and the app role only gets
CONNECT/TEMP on it and USAGE/CREATE on schema public (enough for the migrations, not for
CREATE EXTENSION). Without the embedded PostgreSQL (not configured or not running) the tests fail
with the reason: they never skip.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from typing import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from heimdall_pipeline import settings
from heimdall_pipeline.db.engine import dispose_engine, make_engine
from heimdall_pipeline.db.migrations import forget_schema, migrate


def _app_url() -> sa.URL:
    settings.load_embedded_env()
    url = os.environ.get("HEIMDALL_DATABASE_URL")
    if not url:
        pytest.fail("HEIMDALL_DATABASE_URL is not set: run `heimdall services up`")
    return make_url(url).set(drivername="postgresql+psycopg")


def admin_url(database: str = "postgres") -> sa.URL:
    """Superuser URL of the embedded server (fails the test when no admin password is known)."""
    settings.load_embedded_env()
    password = os.environ.get("HEIMDALL_PG_ADMIN_PASSWORD")
    if not password:
        pytest.fail("HEIMDALL_PG_ADMIN_PASSWORD is not set: these tests need the embedded PostgreSQL "
                    "(`heimdall services up`)")
    app = _app_url()
    return sa.URL.create("postgresql+psycopg", username="postgres", password=password,
                         host=app.host or "127.0.0.1",
                         port=int(os.environ.get("HEIMDALL_PG_PORT") or app.port or settings.DEFAULTS["HEIMDALL_PG_PORT"]),
                         database=database)


def _admin_engine(database: str = "postgres") -> sa.Engine:
    return sa.create_engine(admin_url(database), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool,
                            connect_args={"connect_timeout": 5})


def drop_database(name: str) -> None:
    admin = _admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = :d AND pid <> pg_backend_pid()"), {"d": name})
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def migrate_database(url: str | sa.URL) -> None:
    """`heimdall db migrate`'s step, explicit wherever a test makes a database for the code to use."""
    migrate(make_engine(url))


@contextlib.contextmanager
def scratch_database(*, timescaledb: bool = True, prefix: str = "heimdall_test",
                     migrated: bool = True) -> Iterator[sa.Engine]:
    """A fresh database owned by the app role, at the schema's head unless `migrated=False`;
    yields the app-role engine; drops it on exit."""
    app = _app_url()
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = _admin_engine()
    owner = app.username if timescaledb else "postgres"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}" OWNER "{owner}"')
    except sa.exc.OperationalError as exc:
        pytest.fail(f"embedded PostgreSQL is not reachable: {exc.orig}")
    finally:
        admin.dispose()
    url = app.set(database=name)
    engine = None
    try:
        db_admin = _admin_engine(name)
        try:
            with db_admin.connect() as conn:
                if timescaledb:
                    conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS timescaledb")
                else:
                    conn.exec_driver_sql(f'GRANT CONNECT, TEMPORARY ON DATABASE "{name}" TO "{app.username}"')
                    conn.exec_driver_sql(f'GRANT USAGE, CREATE ON SCHEMA public TO "{app.username}"')
        finally:
            db_admin.dispose()
        engine = make_engine(url)
        if migrated:
            migrate(engine)
        yield engine
    finally:
        if engine is not None:
            forget_schema(engine)
        dispose_engine(url)
        drop_database(name)


@pytest.fixture(scope="module")
def scratch_engine() -> Iterator[sa.Engine]:
    with scratch_database(timescaledb=True) as engine:
        yield engine


@pytest.fixture(scope="module")
def scratch_engine_plain() -> Iterator[sa.Engine]:
    """Like scratch_engine but WITHOUT the timescaledb extension, which the app role cannot create."""
    with scratch_database(timescaledb=False) as engine:
        yield engine
