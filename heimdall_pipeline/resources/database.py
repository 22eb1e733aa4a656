from dagster import ConfigurableResource
from pydantic import Field



class HeimdallDatabase(ConfigurableResource):
    """The PostgreSQL/TimescaleDB database with the receiver registry, sessions and metrics."""

    url: str = Field(description="SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host:5432/heimdall")

    def engine(self):
        """A pooled engine whose schema is migrated (once per process)."""
        # SQLAlchemy loads with the first use, not with the code location
        from heimdall_pipeline.db.engine import make_engine
        from heimdall_pipeline.db.migrations import ensure_schema

        engine = make_engine(self.url)
        ensure_schema(engine)
        return engine
