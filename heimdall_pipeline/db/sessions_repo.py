"""Recording sessions (table `sessions`): requested by the CLI/launchpad, launched by a sensor.

Lifecycle: requested -> launched -> succeeded | failed -> archived (and back by mark_restored).
`mark_launched` is a compare-and-set (only requested -> launched), so two sensor ticks racing on
the same session launch it once. A request object is read by attribute (duck-typed
`sessions.SessionRequest`); naive datetimes are taken as UTC.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Iterable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from heimdall_pipeline.db.migrations import ensure_schema
from heimdall_pipeline.db.models import SESSION_STATUSES, sessions

if TYPE_CHECKING:
    from heimdall_pipeline.sessions import SessionRequest

FINISHED_STATUSES = ("succeeded", "failed")


class UnknownSessionError(KeyError):
    def __init__(self, session_key: str):
        self.session_key = session_key
        super().__init__(session_key)

    def __str__(self) -> str:
        return f"unknown session {self.session_key!r}: no such session_key in the sessions table"


class DuplicateSessionError(ValueError):
    def __init__(self, session_key: str):
        self.session_key = session_key
        super().__init__(f"session {session_key!r} already exists; choose another session key")


class InvalidSessionStatusError(ValueError):
    def __init__(self, status: object):
        super().__init__(f"session status {status!r} is not one of {', '.join(SESSION_STATUSES)}")


@dataclasses.dataclass(frozen=True)
class SessionRecord:
    id: int
    session_key: str
    center_frequency_hz: float
    duration_s: float
    sample_rate_hz: float
    receiver_ids: tuple[str, ...]
    source_kind: str
    transmitter: dict[str, Any] | None
    requested_at: datetime
    scheduled_for: datetime
    status: str
    requested_by: str
    launched_at: datetime | None
    run_id: str | None
    archived_at: datetime | None
    archived_from_status: str | None

    def request_fields(self) -> dict[str, Any]:
        """The SessionRequest fields of this record (`SessionRequest(**record.request_fields())`)."""
        return {
            "session_key": self.session_key,
            "center_frequency_hz": self.center_frequency_hz,
            "duration_s": self.duration_s,
            "sample_rate_hz": self.sample_rate_hz,
            "receiver_ids": self.receiver_ids,
            "source_kind": self.source_kind,
            "requested_by": self.requested_by,
            "scheduled_for": self.scheduled_for,
            "transmitter": self.transmitter,
        }


_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(SessionRecord))


def _to_record(row: sa.Row) -> SessionRecord:
    m = row._mapping
    values = {name: m[name] for name in _RECORD_FIELDS}
    values["receiver_ids"] = tuple(values["receiver_ids"] or ())
    return SessionRecord(**values)


def _utc(value: datetime) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _check_status(status: str) -> str:
    if status not in SESSION_STATUSES:
        raise InvalidSessionStatusError(status)
    return status


def insert_session(engine: sa.Engine, request: "SessionRequest") -> int:
    """Stores a (validated) session request with status 'requested'; returns its id."""
    ensure_schema(engine)
    scheduled_for = getattr(request, "scheduled_for", None)
    values = {
        "session_key": request.session_key,
        "center_frequency_hz": float(request.center_frequency_hz),
        "duration_s": float(request.duration_s),
        "sample_rate_hz": float(request.sample_rate_hz),
        "receiver_ids": list(request.receiver_ids or ()),
        "source_kind": request.source_kind,
        "requested_by": getattr(request, "requested_by", None) or "unknown",
        "transmitter": getattr(request, "transmitter", None) or sa.null(),
        "status": "requested",
    }
    if scheduled_for is not None:
        values["scheduled_for"] = _utc(scheduled_for)
    stmt = (pg_insert(sessions).values(values)
            .on_conflict_do_nothing(index_elements=["session_key"]).returning(sessions.c.id))
    with engine.begin() as conn:
        new_id = conn.execute(stmt).scalar()
    if new_id is None:
        raise DuplicateSessionError(request.session_key)
    return int(new_id)


def get_session(engine: sa.Engine, session_key: str) -> SessionRecord | None:
    ensure_schema(engine)
    with engine.connect() as conn:
        row = conn.execute(sa.select(sessions).where(sessions.c.session_key == session_key)).first()
    return None if row is None else _to_record(row)


def requested_sessions(engine: sa.Engine, *, after_id: int = 0, limit: int = 100) -> list[SessionRecord]:
    """Sessions waiting to be launched (status 'requested', due now), oldest id first, id > after_id."""
    ensure_schema(engine)
    stmt = (sa.select(sessions)
            .where(sessions.c.status == "requested", sessions.c.id > after_id,
                   sessions.c.scheduled_for <= sa.func.now())
            .order_by(sessions.c.id).limit(limit))
    with engine.connect() as conn:
        return [_to_record(row) for row in conn.execute(stmt)]


def mark_launched(engine: sa.Engine, session_key: str, run_id: str | None = None) -> bool:
    """requested -> launched; True only for the one caller that made the transition."""
    ensure_schema(engine)
    stmt = (sa.update(sessions)
            .where(sessions.c.session_key == session_key, sessions.c.status == "requested")
            .values(status="launched", launched_at=sa.func.now(), run_id=run_id)
            .returning(sessions.c.id))
    with engine.begin() as conn:
        return conn.execute(stmt).first() is not None


def set_status(engine: sa.Engine, session_key: str, status: str, *, run_id: str | None = None) -> None:
    """Sets any status (UnknownSessionError if no such session). 'archived' also stamps archived_at."""
    ensure_schema(engine)
    _check_status(status)
    values: dict[str, Any] = {"status": status}
    if run_id is not None:
        values["run_id"] = run_id
    if status == "archived":
        values["archived_at"] = sa.func.now()
        values["archived_from_status"] = sa.case(
            (sessions.c.status == "archived", sessions.c.archived_from_status), else_=sessions.c.status)
    else:
        values["archived_at"] = None
        values["archived_from_status"] = None
    if status == "launched":
        values["launched_at"] = sa.func.coalesce(sessions.c.launched_at, sa.func.now())
    with engine.begin() as conn:
        row = conn.execute(sa.update(sessions).where(sessions.c.session_key == session_key)
                           .values(values).returning(sessions.c.id)).first()
    if row is None:
        raise UnknownSessionError(session_key)


def list_sessions(engine: sa.Engine, *, status: str | Iterable[str] | None = None,
                  older_than: datetime | timedelta | None = None,
                  limit: int | None = None) -> list[SessionRecord]:
    """Sessions ordered by id. `status`: one or several; `older_than`: scheduled_for before this
    instant (a timedelta means now - timedelta)."""
    ensure_schema(engine)
    stmt = sa.select(sessions).order_by(sessions.c.id)
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        for s in statuses:
            _check_status(s)
        stmt = stmt.where(sessions.c.status.in_(statuses))
    if older_than is not None:
        cutoff = (datetime.now(timezone.utc) - older_than if isinstance(older_than, timedelta)
                  else _utc(older_than))
        stmt = stmt.where(sessions.c.scheduled_for < cutoff)
    if limit is not None:
        stmt = stmt.limit(limit)
    with engine.connect() as conn:
        return [_to_record(row) for row in conn.execute(stmt)]


def mark_archived(engine: sa.Engine, keys: Iterable[str]) -> int:
    """Finished (succeeded/failed) sessions -> archived, remembering their status; returns #changed."""
    ensure_schema(engine)
    keys = list(keys)
    if not keys:
        return 0
    stmt = (sa.update(sessions)
            .where(sessions.c.session_key.in_(keys), sessions.c.status.in_(FINISHED_STATUSES))
            .values(status="archived", archived_at=sa.func.now(), archived_from_status=sessions.c.status)
            .returning(sessions.c.id))
    with engine.begin() as conn:
        return len(conn.execute(stmt).all())


def mark_restored(engine: sa.Engine, keys: Iterable[str]) -> int:
    """Archived sessions -> the status they had before archiving; returns #changed."""
    ensure_schema(engine)
    keys = list(keys)
    if not keys:
        return 0
    stmt = (sa.update(sessions)
            .where(sessions.c.session_key.in_(keys), sessions.c.status == "archived")
            .values(status=sa.func.coalesce(sessions.c.archived_from_status, "succeeded"),
                    archived_at=None, archived_from_status=None)
            .returning(sessions.c.id))
    with engine.begin() as conn:
        return len(conn.execute(stmt).all())
