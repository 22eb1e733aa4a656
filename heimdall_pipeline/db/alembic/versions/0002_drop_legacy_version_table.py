"""drop the hand-written migrator's version table (schema_migrations)

Alembic's `alembic_version` records the schema's revision now. A database adopted from the
hand-written migrator keeps its `schema_migrations` (versions 1-6) until here; a database made by
Alembic never had it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-01
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP TABLE IF EXISTS schema_migrations")


def downgrade() -> None:
    # back to what the hand-written migrator would find: its table at version 6
    op.execute("""
        CREATE TABLE schema_migrations (
            version integer PRIMARY KEY,
            name text NOT NULL DEFAULT '',
            applied_at timestamptz NOT NULL DEFAULT now()
        )
    """)
    op.execute("INSERT INTO schema_migrations (version) SELECT generate_series(1, 6)")
