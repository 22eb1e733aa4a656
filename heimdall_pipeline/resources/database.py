from dagster import ConfigurableResource
from pydantic import Field



class HeimdallDatabase(ConfigurableResource):
    """The PostgreSQL/TimescaleDB database with the receiver registry, sessions and metrics."""

    url: str = Field(description="SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host:5432/heimdall")

    def engine(self):
        """A pooled engine on a database at the schema's head revision; SchemaNotCurrentError (naming
        `heimdall db migrate`) otherwise: runs never migrate."""
        # SQLAlchemy and Alembic load with the first use, not with the code location
        from heimdall_pipeline.db.engine import make_engine
        from heimdall_pipeline.db.migrations import check_schema

        engine = make_engine(self.url)
        check_schema(engine)
        return engine
