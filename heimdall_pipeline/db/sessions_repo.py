"""Recording sessions (table `sessions`): requested by the CLI/launchpad, launched by a sensor.

Lifecycle: requested -> launched -> succeeded | failed -> archived (and back by mark_restored).
Rows are read and written as `sessions.Session`, whose fields are the table's columns: `_row_values`
and `_to_session` are the one mapping. Naive datetimes are taken as UTC.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from heimdall_pipeline.db.migrations import ensure_schema
from heimdall_pipeline.db.models import SESSION_STATUSES, sessions
from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.sessions import REQUEST_FIELDS, Session

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


SESSION_FIELDS = tuple(f.name for f in dataclasses.fields(Session))


def _to_session(row: sa.Row) -> Session:
    m = row._mapping
    values = {name: m[name] for name in SESSION_FIELDS}
    values["receiver_ids"] = tuple(values["receiver_ids"] or ())
    return Session(**values)


def _row_values(session: Session) -> dict[str, Any]:
    """The request columns of a new row; the database sets id, status and the time stamps."""
    values = {name: getattr(session, name) for name in REQUEST_FIELDS}
    values["center_frequency_hz"] = float(session.center_frequency_hz)
    values["duration_s"] = float(session.duration_s)
    values["sample_rate_hz"] = float(session.sample_rate_hz)
    values["receiver_ids"] = list(session.receiver_ids)
    values["requested_by"] = session.requested_by or "unknown"
    values["transmitter"] = session.transmitter or sa.null()
    values["recordings"] = session.recordings or sa.null()
    values["scheduled_for"] = _utc(session.scheduled_for)
    return values


def _utc(value: datetime) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _check_status(status: str) -> str:
    if status not in SESSION_STATUSES:
        raise InvalidSessionStatusError(status)
    return status


def insert_session(engine: sa.Engine, session: Session) -> Session:
    """Stores a (validated) session with status 'requested'; returns it as stored (id, time stamps)."""
    ensure_schema(engine)
    with engine.begin() as conn:
        return _insert_requested(conn, session)


def _insert_requested(conn: sa.Connection, session: Session) -> Session:
    row = conn.execute(pg_insert(sessions).values({**_row_values(session), "status": "requested"})
                       .on_conflict_do_nothing(index_elements=["session_key"]).returning(*sessions.c)).first()
    if row is None:
        raise DuplicateSessionError(session.session_key)
    return _to_session(row)


def get_session(engine: sa.Engine, session_key: str) -> Session | None:
    ensure_schema(engine)
    with engine.connect() as conn:
        row = conn.execute(sa.select(sessions).where(sessions.c.session_key == session_key)).first()
    return None if row is None else _to_session(row)


def requested_sessions(engine: sa.Engine, *, after_id: int = 0, since: datetime | None = None,
                       now: datetime | None = None, limit: int = 100) -> list[Session]:
    """Sessions waiting to be launched (status 'requested', scheduled_for <= now), oldest id first,
    that are new to a caller who saw everything up to `after_id` at `since`: id > after_id, or
    requested or come due after `since`. Without `since`: every due session with id > after_id."""
    ensure_schema(engine)
    new = sessions.c.id > after_id
    if since is not None:
        since = _utc(since)
        new = sa.or_(new, sessions.c.scheduled_for > since, sessions.c.requested_at > since)
    due = sessions.c.scheduled_for <= (sa.func.now() if now is None else _utc(now))
    stmt = (sa.select(sessions).where(sessions.c.status == "requested", new, due)
            .order_by(sessions.c.id).limit(limit))
    with engine.connect() as conn:
        return [_to_session(row) for row in conn.execute(stmt)]


def mark_launched(engine: sa.Engine, session_key: str, run_id: str | None = None) -> bool:
    """requested -> launched as a compare-and-set: True only for the one caller that made the
    transition (concurrent callers for the same session: exactly one gets True). The sensor does
    not call it: its run key keeps a session to one run."""
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
                  limit: int | None = None) -> list[Session]:
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
        return [_to_session(row) for row in conn.execute(stmt)]


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


def insert_import(engine: sa.Engine, session: Session, new_receivers: Iterable[Receiver]) -> Session:
    """Stores an imported session and the receivers it registers in ONE transaction: either all
    of them are stored or none (DuplicateSessionError / DuplicateReceiverError leave nothing)."""
    from heimdall_pipeline.db.models import websdrs
    from heimdall_pipeline.db.receivers_repo import DuplicateReceiverError, _row_values as receiver_row

    ensure_schema(engine)
    with engine.begin() as conn:
        for receiver in new_receivers:
            added = conn.execute(pg_insert(websdrs).values(receiver_row(receiver))
                                 .on_conflict_do_nothing(index_elements=["id"]).returning(websdrs.c.id)).first()
            if added is None:
                raise DuplicateReceiverError(receiver.id)
        return _insert_requested(conn, session)
