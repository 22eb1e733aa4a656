"""The receiver registry (table `websdrs`), read and written as `receivers.Receiver` objects.

Every write goes through `validation.validate_receiver` first (the table's check constraints are a second
line of defence). All SQL is parameterised: a name such as "x'); DROP TABLE websdrs;--" is stored
verbatim.
The schema is migrated beforehand (`heimdall db migrate`), never here.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from heimdall_pipeline.db.models import sessions, websdrs
from heimdall_pipeline.receivers import DEFAULT_RECEIVERS, InvalidReceiverError, Receiver
from heimdall_pipeline.validation import validate_receiver
from heimdall_pipeline.text import shown

RECEIVER_FIELDS = tuple(f.name for f in dataclasses.fields(Receiver))


class UnknownReceiverError(KeyError):
    """No receiver with this id is registered."""

    def __init__(self, receiver_id: str):
        self.receiver_id = receiver_id
        super().__init__(receiver_id)

    def __str__(self) -> str:
        return f"unknown receiver {shown(self.receiver_id)}: it is not in the websdrs registry"


class DuplicateReceiverError(ValueError):
    """A receiver with this id is already registered."""

    def __init__(self, receiver_id: str):
        self.receiver_id = receiver_id
        super().__init__(f"receiver {receiver_id!r} already exists; use update_receiver to change it")


# What a session needs of a receiver when it records and analyses it. While a session that uses
# the receiver is pending (requested or launched), these are not changed: the edit is refused
# rather than the receiver snapshotted into the session, so the registry stays the one place a
# receiver is described (a snapshot would be a second copy that the recorded SigMF metadata, the
# localization and the UI could disagree with). Names and the active flag may change at any time.
RECORDING_FIELDS = tuple(name for name in RECEIVER_FIELDS if name not in ("name", "location_name", "is_active"))
PENDING_SESSION_STATUSES = ("requested", "launched")


class ReceiverInUseError(ValueError):
    """An edit of what pending sessions need of a receiver is refused."""

    def __init__(self, receiver_id: str, fields: list[str], session_keys: list[str]):
        self.receiver_id, self.session_keys = receiver_id, session_keys
        shown = ", ".join(session_keys[:5]) + (f" and {len(session_keys) - 5} more" if len(session_keys) > 5 else "")
        super().__init__(f"receiver {receiver_id!r}: {', '.join(fields)} cannot change while pending sessions use it "
                         f"({shown}); edit it after they have run")


def _row_values(receiver: Receiver) -> dict[str, Any]:
    r = validate_receiver(receiver)
    return {
        "id": r.id,
        "name": r.name,
        "url": r.url,
        "kind": r.kind,
        "location_name": r.location_name or "",
        "latitude": float(r.latitude),
        "longitude": float(r.longitude),
        "altitude_m": float(r.altitude_m),
        "is_active": bool(r.is_active),
        "timeout_seconds": float(r.timeout_seconds),
        "retry_count": int(r.retry_count),
        "max_channels": int(r.max_channels),
        "min_frequency_hz": float(r.min_frequency_hz),
        "max_frequency_hz": None if r.max_frequency_hz is None else float(r.max_frequency_hz),
    }


def _to_receiver(row: sa.Row) -> Receiver:
    m = row._mapping
    return Receiver(**{name: m[name] for name in RECEIVER_FIELDS})


def seed_default_receivers(engine: sa.Engine, receivers: Iterable[Receiver] = DEFAULT_RECEIVERS) -> int:
    """Inserts the default receivers that are missing; never touches existing rows. Returns #inserted."""
    values = [_row_values(r) for r in receivers]
    if not values:
        return 0
    stmt = pg_insert(websdrs).values(values).on_conflict_do_nothing(index_elements=["id"])
    with engine.begin() as conn:
        return len(conn.execute(stmt.returning(websdrs.c.id)).all())


def list_receivers(engine: sa.Engine, *, active_only: bool = False) -> list[Receiver]:
    stmt = sa.select(websdrs).order_by(websdrs.c.id)
    if active_only:
        stmt = stmt.where(websdrs.c.is_active.is_(True))
    with engine.connect() as conn:
        return [_to_receiver(row) for row in conn.execute(stmt)]


def get_receiver(engine: sa.Engine, receiver_id: str) -> Receiver:
    with engine.connect() as conn:
        row = conn.execute(sa.select(websdrs).where(websdrs.c.id == receiver_id)).first()
    if row is None:
        raise UnknownReceiverError(receiver_id)
    return _to_receiver(row)


def add_receiver(engine: sa.Engine, receiver: Receiver) -> Receiver:
    """Registers a new receiver; DuplicateReceiverError if the id is taken."""
    values = _row_values(receiver)
    stmt = (pg_insert(websdrs).values(values).on_conflict_do_nothing(index_elements=["id"])
            .returning(websdrs.c.id))
    with engine.begin() as conn:
        if conn.execute(stmt).first() is None:
            raise DuplicateReceiverError(receiver.id)
    return receiver


def update_receiver(engine: sa.Engine, receiver_id: str, **changes: Any) -> Receiver:
    """Applies `changes` (Receiver field names) and stores the validated result; returns it."""
    for name in changes:
        if name not in RECEIVER_FIELDS:
            raise InvalidReceiverError(name, f"is not a receiver field (fields: {', '.join(RECEIVER_FIELDS)})")
    if "id" in changes and changes["id"] != receiver_id:
        raise InvalidReceiverError("id", "cannot be changed (it names partitions and stored objects); "
                                         "add a new receiver and deactivate this one instead")
    with engine.begin() as conn:
        row = conn.execute(sa.select(websdrs).where(websdrs.c.id == receiver_id).with_for_update()).first()
        if row is None:
            raise UnknownReceiverError(receiver_id)
        current = _to_receiver(row)
        merged = dataclasses.replace(current, **changes)
        changed = [name for name in RECORDING_FIELDS if getattr(merged, name) != getattr(current, name)]
        if changed:
            pending = conn.execute(sa.select(sessions.c.session_key).where(
                sessions.c.status.in_(PENDING_SESSION_STATUSES),
                sa.literal(receiver_id) == sa.any_(sessions.c.receiver_ids)).order_by(sessions.c.id)).scalars().all()
            if pending:
                raise ReceiverInUseError(receiver_id, changed, list(pending))
        values = _row_values(merged)
        values.pop("id")
        conn.execute(sa.update(websdrs).where(websdrs.c.id == receiver_id).values(values))
    return merged


def set_receiver_active(engine: sa.Engine, receiver_id: str, active: bool) -> Receiver:
    with engine.begin() as conn:
        row = conn.execute(
            sa.update(websdrs).where(websdrs.c.id == receiver_id).values(is_active=bool(active))
            .returning(*websdrs.c)).first()
    if row is None:
        raise UnknownReceiverError(receiver_id)
    return _to_receiver(row)
