"""Metrics/registry database: SQLAlchemy models, versioned migrations and repositories.

No Dagster here. Typical use:

    from heimdall_pipeline.db import make_engine, ensure_schema
    engine = make_engine(os.environ["HEIMDALL_DATABASE_URL"])
    report = ensure_schema(engine)  # migrates once per process; report.summary() for humans

Repositories: `receivers_repo` (websdrs), `sessions_repo` (sessions),
`measurements_repo` (measurements, localizations). Every repository function calls
`ensure_schema` itself, so callers never need to migrate first.
"""

from heimdall_pipeline.db.engine import dispose_engine, make_engine
from heimdall_pipeline.db.migrations import SchemaReport, TimescaleSettings, ensure_schema, migrate

__all__ = [
    "SchemaReport", "TimescaleSettings", "dispose_engine", "ensure_schema",
    "make_engine", "migrate",
]
