"""Metrics/registry database: SQLAlchemy models (the schema), Alembic migrations and repositories.

No Dagster here. Typical use:

    from heimdall_pipeline.db.engine import make_engine
    from heimdall_pipeline.db.migrations import check_schema
    engine = make_engine(os.environ["HEIMDALL_DATABASE_URL"])
    check_schema(engine)  # SchemaNotCurrentError unless `heimdall db migrate` brought it to head

Repositories: `receivers_repo` (websdrs), `sessions_repo` (sessions), `captures_repo`
(session_captures), `measurements_repo` (measurements, localizations). They never migrate: the
schema is brought to head by `heimdall db migrate` (`migrations.migrate`), and the Dagster resource
(`resources.HeimdallDatabase.engine()`) checks it first. Nothing is imported here, so a repository
does not load Alembic.
"""
