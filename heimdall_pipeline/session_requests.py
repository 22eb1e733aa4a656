"""The one way a session is requested (CLI, launchpad job, schedule): validate, resolve, store.
No Dagster: callers add the Dagster partitions (the sensor does)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from heimdall_pipeline.sessions import Session
from heimdall_pipeline.validation import default_receivers, validate_session_request

if TYPE_CHECKING:
    import sqlalchemy as sa


def request_session(engine: sa.Engine, *, requested_by: str, **fields: Any) -> Session:
    """Validates the fields against the receiver registry and stores the session; returns it as
    stored (status 'requested', with its id).

    An empty receiver list means every active receiver; the stored session names them, so a
    receiver added or disabled later does not change what this session records.
    """
    from heimdall_pipeline.db.receivers_repo import list_receivers  # the database layer (SQLAlchemy) loads when a session is requested, not the code location
    from heimdall_pipeline.db.sessions_repo import insert_session

    registry = list_receivers(engine)
    session = validate_session_request(receivers=registry, requested_by=requested_by, **fields)
    if not session.receiver_ids:
        session = dataclasses.replace(session, receiver_ids=tuple(
            r.id for r in default_receivers(registry, session.source_kind)))
    return insert_session(engine, session)
