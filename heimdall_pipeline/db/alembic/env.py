"""Alembic's environment for the Heimdall schema: the models' metadata, one transaction.

`heimdall db migrate` (db/migrations.py) hands its own connection in `config.attributes`, inside
its transaction and advisory lock. Alembic's own command line (`alembic -c alembic.ini ...` from the
repository root, e.g. `revision --autogenerate`) connects to HEIMDALL_DATABASE_URL instead (the
embedded services' URL when it is unset); the URL never lives in a file.
"""

from __future__ import annotations

import os
import re

import sqlalchemy as sa
from alembic import context
from alembic.script import ScriptDirectory

from heimdall_pipeline import settings
from heimdall_pipeline.db.engine import normalize_url
from heimdall_pipeline.db.models import Base
from heimdall_pipeline.db.timescale import HYPERTABLES

config = context.config


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Leaves out what TimescaleDB adds beside the models: the default `time` index of a hypertable."""
    if type_ == "index" and reflected and compare_to is None:
        return not (obj.table.name in HYPERTABLES and name == f"{obj.table.name}_time_idx")
    return True


def number_revision(migration_context, revision, directives) -> None:
    """`alembic revision` numbers a new revision after the head (0003 after 0002) unless given
    `--rev-id NNNN`: the files sort in the order they apply."""
    script = directives[0]
    if not re.fullmatch(r"\d{4}", script.rev_id or ""):
        heads = ScriptDirectory.from_config(config).get_heads()
        script.rev_id = f"{max((int(head) for head in heads), default=0) + 1:04d}"


def _configure(**kwargs) -> None:
    context.configure(target_metadata=Base.metadata, compare_type=True, compare_server_default=True,
                      include_object=include_object, process_revision_directives=number_revision, **kwargs)


def _database_url() -> sa.URL:
    settings.load_embedded_env()
    url = os.environ.get("HEIMDALL_DATABASE_URL")
    if not url:
        raise RuntimeError("HEIMDALL_DATABASE_URL is not set: export it, or run `heimdall services up`")
    return normalize_url(url)


def run_online(connection: sa.Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():  # a no-op inside `heimdall db migrate`'s transaction
        context.run_migrations()


if context.is_offline_mode():
    # the baseline asks the server whether it has TimescaleDB: there is no SQL script without one
    raise RuntimeError("offline mode (--sql) is not supported: run `heimdall db migrate` against the database")
elif config.attributes.get("connection") is not None:
    run_online(config.attributes["connection"])
else:
    engine = sa.create_engine(_database_url(), poolclass=sa.pool.NullPool,
                              connect_args={"options": "-c TimeZone=UTC"})
    with engine.connect() as connection:
        run_online(connection)
    engine.dispose()
