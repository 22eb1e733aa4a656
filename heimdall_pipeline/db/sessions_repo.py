"""Recording sessions (table `sessions`): requested by the CLI/launchpad, launched by a sensor.

Lifecycle: requested -> launched -> succeeded | failed -> archived (and back by mark_restored);
`transition` is the one writer of the status (ALLOWED_FROM lists the moves).
Rows are read and written as `sessions.Session`, whose fields are the table's columns: `_row_values`
and `_to_session` are the one mapping. Naive datetimes are taken as UTC.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from heimdall_pipeline.db.models import SESSION_STATUSES, sessions
from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.sessions import REQUEST_FIELDS, Session
from heimdall_pipeline.text import shown

FINISHED_STATUSES = ("succeeded", "failed")


class UnknownSessionError(KeyError):
    def __init__(self, session_key: str):
        self.session_key = session_key
        super().__init__(session_key)

    def __str__(self) -> str:
        return f"unknown session {shown(self.session_key)}: no such session_key in the sessions table"


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
    with engine.begin() as conn:
        return _insert_requested(conn, session)


def _insert_requested(conn: sa.Connection, session: Session) -> Session:
    row = conn.execute(pg_insert(sessions).values({**_row_values(session), "status": "requested"})
                       .on_conflict_do_nothing(index_elements=["session_key"]).returning(*sessions.c)).first()
    if row is None:
        raise DuplicateSessionError(session.session_key)
    return _to_session(row)


def get_session(engine: sa.Engine, session_key: str) -> Session | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(sessions).where(sessions.c.session_key == session_key)).first()
    return None if row is None else _to_session(row)


def requested_sessions(engine: sa.Engine, *, after_id: int = 0, since: datetime | None = None,
                       now: datetime | None = None, limit: int = 100) -> list[Session]:
    """Sessions waiting to be launched (status 'requested', scheduled_for <= now), oldest id first,
    that are new to a caller who saw everything up to `after_id` at `since`: id > after_id, or
    requested or come due after `since`. Without `since`: every due session with id > after_id."""
    new = sessions.c.id > after_id
    if since is not None:
        since = _utc(since)
        new = sa.or_(new, sessions.c.scheduled_for > since, sessions.c.requested_at > since)
    due = sessions.c.scheduled_for <= (sa.func.now() if now is None else _utc(now))
    stmt = (sa.select(sessions).where(sessions.c.status == "requested", new, due)
            .order_by(sessions.c.id).limit(limit))
    with engine.connect() as conn:
        return [_to_session(row) for row in conn.execute(stmt)]


# The one writer of a session's status: every change goes through `transition` (or the batch
# forms mark_archived / mark_restored below), as a compare-and-set on the current status.
# A finished session may be launched again (a re-run rewrites its objects and rows).
ALLOWED_FROM: dict[str, tuple[str, ...]] = {
    "launched": ("requested", "succeeded", "failed"),
    "succeeded": ("launched", "succeeded", "failed"),
    "failed": ("requested", "launched", "succeeded", "failed"),
    "archived": FINISHED_STATUSES,
}


class InvalidTransitionError(ValueError):
    def __init__(self, session: Session, status: str, why: str = ""):
        self.session, self.status = session, status
        super().__init__(f"session {session.session_key!r} cannot go from {session.status!r} to {status!r}"
                         + (f": {why}" if why else f" (allowed from: {', '.join(ALLOWED_FROM.get(status, ())) or 'nothing'})"))


class SessionAlreadyLaunchedError(InvalidTransitionError):
    """Another launch of the session is in progress: one run per session at a time."""

    def __init__(self, session: Session):
        super().__init__(session, "launched", f"it is already launched (launch {session.run_id}, since "
                         f"{session.launched_at:%Y-%m-%d %H:%M:%S} UTC); one launch per session at a time")


def transition(engine: sa.Engine, session_key: str, status: str, *, reason: str | None = None,
               run_id: str | None = None, if_run_id: str | None = None) -> Session:
    """Moves a session to `status` if ALLOWED_FROM permits it from its current status (and, with
    `if_run_id`, only if that launch is still the session's), in one UPDATE; returns the session.
    InvalidTransitionError (or SessionAlreadyLaunchedError) otherwise, UnknownSessionError if absent.
    """
    if _check_status(status) not in ALLOWED_FROM or status == "archived":
        raise ValueError(f"transition() does not set {status!r}: use mark_archived / mark_restored")
    values: dict[str, Any] = {"status": status, "status_reason": reason}
    if run_id is not None:
        values["run_id"] = run_id
    if status == "launched":
        values["launched_at"] = sa.func.now()
    allowed = sessions.c.status.in_(ALLOWED_FROM[status])
    if status == "launched" and run_id is not None:
        # the same launch may claim again (each run of a launch, a retried step)
        allowed = sa.or_(allowed, sa.and_(sessions.c.status == "launched", sessions.c.run_id == run_id))
    condition = [sessions.c.session_key == session_key, allowed]
    if if_run_id is not None:
        condition.append(sessions.c.run_id == if_run_id)
    with engine.begin() as conn:
        row = conn.execute(sa.update(sessions).where(*condition).values(values).returning(*sessions.c)).first()
    if row is not None:
        return _to_session(row)
    current = get_session(engine, session_key)
    if current is None:
        raise UnknownSessionError(session_key)
    if status == "launched" and current.status == "launched":
        raise SessionAlreadyLaunchedError(current)
    raise InvalidTransitionError(current, status, f"launch {if_run_id} is no longer the session's"
                                 if if_run_id is not None and current.run_id != if_run_id else "")


def claim_launch(engine: sa.Engine, session_key: str, launch_id: str) -> Session:
    """requested/succeeded/failed -> launched under `launch_id` (the runs of one launch carry it in
    their heimdall/launch tag), as a compare-and-set: of concurrent launches of one session exactly
    one wins; the others get SessionAlreadyLaunchedError before anything is recorded."""
    return transition(engine, session_key, "launched", run_id=launch_id)


def list_sessions(engine: sa.Engine, *, status: str | Iterable[str] | None = None,
                  older_than: datetime | timedelta | None = None,
                  limit: int | None = None) -> list[Session]:
    """Sessions ordered by id. `status`: one or several; `older_than`: scheduled_for before this
    instant (a timedelta means now - timedelta)."""
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

    with engine.begin() as conn:
        for receiver in new_receivers:
            added = conn.execute(pg_insert(websdrs).values(receiver_row(receiver))
                                 .on_conflict_do_nothing(index_elements=["id"]).returning(websdrs.c.id)).first()
            if added is None:
                raise DuplicateReceiverError(receiver.id)
        return _insert_requested(conn, session)


# The outcome error type of a receiver not recorded because its session was refused as a whole
# (assets/acquisition.refuse_session).
REFUSED_ERROR_TYPE = "SessionRefusedError"


def session_outcome(engine: sa.Engine, session: Session) -> tuple[str, str]:
    """(status, reason) of a recorded session from what is stored: succeeded when at least one
    requested receiver has a measurements row; the reason counts them and names each missing
    receiver's cause from session_captures."""
    from heimdall_pipeline.db.captures_repo import outcomes_for_session
    from heimdall_pipeline.db.measurements_repo import measurements_for_session

    measured = {row.receiver_id for row in measurements_for_session(engine, session.session_key)}
    outcomes = outcomes_for_session(engine, session.session_key)
    requested = list(session.receiver_ids)
    missing = [rid for rid in requested if rid not in measured]
    status = "succeeded" if len(missing) < len(requested) else "failed"
    reason = f"{len(requested) - len(missing)} of {len(requested)} receivers measured"
    # Receivers not recorded because the whole session was refused are counted once, beside the
    # receiver(s) that caused the refusal with their own error.
    refused = [rid for rid in missing if rid in outcomes and outcomes[rid].error_type == REFUSED_ERROR_TYPE]
    named = [rid for rid in missing if rid not in refused]
    if named:
        reason += "; " + "; ".join(
            f"{rid}: {outcomes[rid].reason if rid in outcomes else 'no capture stored'}" for rid in named)
    if refused:
        reason += f"; {len(refused)} other receiver(s) not recorded: the session was refused"
    return status, reason


def finish_session(engine: sa.Engine, session_key: str, *, if_run_id: str | None = None) -> Session:
    """launched (or finished, when recomputed) -> succeeded | failed by session_outcome."""
    session = get_session(engine, session_key)
    if session is None:
        raise UnknownSessionError(session_key)
    status, reason = session_outcome(engine, session)
    return transition(engine, session_key, status, reason=reason, if_run_id=if_run_id)
