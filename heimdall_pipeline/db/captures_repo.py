"""Per-receiver outcomes of sessions (table `session_captures`): stored / failed, one row per
receiver the session asked for.

Written by the step that stores a capture (the raw_iq IO manager, and raw_iq itself when it
refuses a session before recording), read by session_summary, the raw_iq checks, restore and
`heimdall verify`. Order of writing, so that no state is half-true: a capture's object and its
metadata are put in S3 first, then its 'stored' row; a capture that could not be recorded or
stored gets a 'failed' row with the error. A 'stored' row therefore always names an object; an
object without a row (a crash between the two) is what `heimdall verify` reports.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Iterable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from heimdall_pipeline.db.models import CAPTURE_STATUSES, session_captures

MAX_ERROR_MESSAGE = 2000  # characters kept of an error message


@dataclasses.dataclass(frozen=True)
class CaptureOutcome:
    """One receiver's outcome in one session; the fields are the table's columns."""

    session_key: str
    receiver_id: str
    status: str  # CAPTURE_STATUSES
    error_type: str | None = None
    error_message: str | None = None
    attempts: int = 0
    bytes: int | None = None
    sha256: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    run_id: str | None = None
    updated_at: datetime | None = None

    def __post_init__(self):
        if self.status not in CAPTURE_STATUSES:
            raise ValueError(f"capture status {self.status!r} is not one of {', '.join(CAPTURE_STATUSES)}")
        if self.status == "stored" and (self.bytes is None or not self.sha256):
            raise ValueError(f"{self.session_key}.{self.receiver_id}: a stored capture needs its size and SHA-256")

    @property
    def reason(self) -> str:
        """Why there is no capture ('' for a stored one)."""
        if self.status == "stored":
            return ""
        return f"{self.error_type}: {self.error_message}" if self.error_type else (self.error_message or "failed")


FIELDS = tuple(f.name for f in dataclasses.fields(CaptureOutcome))


def failed_outcome(session_key: str, receiver_id: str, error: BaseException | str, *, error_type: str | None = None,
                   attempts: int = 0, run_id: str | None = None) -> CaptureOutcome:
    """A 'failed' outcome from an exception or a message."""
    kind = error_type or (type(error).__name__ if isinstance(error, BaseException) else "Error")
    return CaptureOutcome(session_key, receiver_id, "failed", error_type=kind,
                          error_message=str(error)[:MAX_ERROR_MESSAGE], attempts=attempts, run_id=run_id)


def _upsert_statement():
    insert = pg_insert(session_captures)
    return insert.on_conflict_do_update(
        index_elements=["session_key", "receiver_id"],
        set_={**{name: insert.excluded[name] for name in FIELDS if name not in ("session_key", "receiver_id", "updated_at")},
              "updated_at": sa.func.now()})


# One statement for any number of rows, so SQLAlchemy compiles it once per process (a VALUES list
# built per call was compiled on every call: 3.7 ms of 7 rows' 4 ms).
_UPSERT = _upsert_statement()


def record_outcomes(engine: sa.Engine, outcomes: Iterable[CaptureOutcome]) -> int:
    """Upserts outcomes (the latest run's outcome of a receiver replaces the previous one), in one
    transaction and one round trip; returns how many were written."""
    rows = [{name: getattr(o, name) for name in FIELDS if name != "updated_at"} for o in outcomes]
    if not rows:
        return 0
    with engine.begin() as conn:
        conn.execute(_UPSERT, rows)
    return len(rows)


def outcomes_for_session(engine: sa.Engine, session_key: str) -> dict[str, CaptureOutcome]:
    """The session's outcomes by receiver id."""
    stmt = sa.select(session_captures).where(session_captures.c.session_key == session_key)
    with engine.connect() as conn:
        return {row.receiver_id: CaptureOutcome(**{name: row._mapping[name] for name in FIELDS})
                for row in conn.execute(stmt)}


def capture_timing(outcomes: Iterable[CaptureOutcome]) -> dict[str, float | int | None]:
    """How simultaneous a session's stored captures are: the spread of their first-sample times
    (ms) and the fraction of the shortest capture that every capture covers (1.0 = all record the
    same stretch). None where fewer than two captures are stored."""
    spans = [(o.start_time, o.end_time) for o in outcomes
             if o.status == "stored" and o.start_time is not None and o.end_time is not None]
    if len(spans) < 2:
        return {"captures_timed": len(spans), "first_sample_spread_ms": None, "common_fraction": None}
    starts, ends = [s for s, _ in spans], [e for _, e in spans]
    shortest_s = min((e - s).total_seconds() for s, e in spans)
    common_s = max(0.0, (min(ends) - max(starts)).total_seconds())
    return {"captures_timed": len(spans),
            "first_sample_spread_ms": (max(starts) - min(starts)).total_seconds() * 1e3,
            "common_fraction": common_s / shortest_s if shortest_s > 0 else None}


def captures_of_receiver(engine: sa.Engine, receiver_id: str, *, since: datetime | None = None,
                         until: datetime | None = None) -> list[CaptureOutcome]:
    """Every capture outcome of one receiver, oldest first (one query on the receiver/time index)."""
    stmt = sa.select(session_captures).where(session_captures.c.receiver_id == receiver_id)
    if since is not None:
        stmt = stmt.where(session_captures.c.start_time >= since)
    if until is not None:
        stmt = stmt.where(session_captures.c.start_time < until)
    with engine.connect() as conn:
        return [CaptureOutcome(**{name: row._mapping[name] for name in FIELDS})
                for row in conn.execute(stmt.order_by(session_captures.c.start_time, session_captures.c.session_key))]
