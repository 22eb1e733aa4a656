"""The one way a session is requested (CLI, launchpad job, schedule): validate, resolve, store.
No Dagster: callers add the Dagster partitions (the sensor does)."""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa

from heimdall_pipeline.db.receivers_repo import list_receivers
from heimdall_pipeline.db.sessions_repo import insert_session
from heimdall_pipeline.sessions import SessionRequest, validate_session_request


def request_session(engine: sa.Engine, *, requested_by: str, **fields: Any) -> SessionRequest:
    """Validates the fields against the receiver registry and stores the request.

    An empty receiver list means every active receiver; the stored request names them, so a
    receiver added or disabled later does not change what this session records.
    """
    registry = list_receivers(engine)
    request = validate_session_request(receivers=registry, requested_by=requested_by, **fields)
    if not request.receiver_ids:
        request = dataclasses.replace(request, receiver_ids=tuple(r.id for r in registry if r.is_active))
    insert_session(engine, request)
    return request
