"""session_captures holds the receivers a session asked for; receiver channel leases

Captures are partitions only for the receivers a session asked for (partitions.py), and the table
follows: the 'not_requested' rows of the sessions x registry product go. Every capture of one
receiver stays one indexed query. A run records several receivers, so a receiver's channels are
held as leases here rather than by one run tag per receiver.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM session_captures WHERE status = 'not_requested'")
    op.execute("ALTER TABLE session_captures DROP CONSTRAINT session_captures_status")
    op.execute("ALTER TABLE session_captures ADD CONSTRAINT session_captures_status "
               "CHECK (status IN ('stored', 'failed'))")
    op.execute("CREATE INDEX session_captures_receiver_time_idx ON session_captures (receiver_id, start_time)")
    op.execute("""
        CREATE TABLE receiver_leases (
            receiver_id text NOT NULL REFERENCES websdrs (id) ON DELETE CASCADE,
            run_id text NOT NULL,
            session_key text NOT NULL,
            acquired_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            CONSTRAINT receiver_leases_pkey PRIMARY KEY (receiver_id, run_id)
        )
    """)


def downgrade() -> None:
    # the deleted 'not_requested' rows said nothing a session row does not: they are not restored
    op.execute("DROP TABLE receiver_leases")
    op.execute("DROP INDEX session_captures_receiver_time_idx")
    op.execute("ALTER TABLE session_captures DROP CONSTRAINT session_captures_status")
    op.execute("ALTER TABLE session_captures ADD CONSTRAINT session_captures_status "
               "CHECK (status IN ('stored', 'failed', 'not_requested'))")
