"""Which source records a receiver for a session, the rule that live sources cannot re-record the
past, and the one start instant from which a session's live receivers record. Pure: no Dagster,
no storage."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.sessions import Session
from heimdall_pipeline.capture import Capture
from heimdall_pipeline.sources.acquisition import AcquisitionError, CaptureOne, StartMissedError, TimeLimit
from heimdall_pipeline.sources.base import CaptureIO
from heimdall_pipeline.sources.registry import source_for

# A live capture may start a little before its scheduled time and finish a while after
# (queueing, retries); outside that window the moment is gone.
LIVE_WINDOW_GRACE = timedelta(minutes=15)


class LiveWindowClosedError(AcquisitionError):
    """A live receiver was asked to record a session whose time has passed."""

    transient = False


def check_live_window(session: Session, receivers: Sequence[Receiver], now: datetime | None = None) -> None:
    """Raises LiveWindowClosedError for the first receiver whose source is live when `now` is
    outside the session's window; sources that are not live may record at any time."""
    now = now or datetime.now(timezone.utc)
    opens = session.scheduled_for - LIVE_WINDOW_GRACE
    closes = session.scheduled_for + timedelta(seconds=session.duration_s) + LIVE_WINDOW_GRACE
    if opens <= now <= closes:
        return
    for receiver in receivers:
        source = source_for(session, receiver)
        if source.live:
            raise LiveWindowClosedError(
                receiver.id,
                f"is a live {source.kind} receiver and session {session.session_key} was scheduled for "
                f"{session.scheduled_for.isoformat()}; it cannot re-record outside {opens.isoformat()}.."
                f"{closes.isoformat()}. To recompute results, backfill receiver_metrics (it reads the stored IQ).",
            )


def session_start(session: Session, receivers: Sequence[Receiver], now: datetime | None = None) -> datetime | None:
    """The instant from which every live receiver of the session stores samples: the session's
    scheduled time (`--at`), or, when that is nearer than the connect margin of its live sources
    (the longest of their kinds'), `now` (the launch) plus that margin. None when no receiver is
    live: the others record the same capture whenever they run."""
    live = {source.kind: source for source in (source_for(session, r) for r in receivers) if source.live}
    if not live:
        return None
    for source in live.values():
        source.prepare()
    margins = [source.connect_margin_s for source in live.values()]
    now = now or datetime.now(timezone.utc)
    return max(session.scheduled_for, now + timedelta(seconds=max(margins)))


def attempt_time_limit(session: Session, start_at: datetime | None) -> TimeLimit:
    """An attempt's time limit: the receiver's timeout, plus, for a live source, the wait until
    the start instant and the recording itself (`timeout_seconds` is the allowance beyond them)."""

    def limit(receiver: Receiver) -> float:
        if start_at is None or not source_for(session, receiver).live:
            return float(receiver.timeout_seconds)
        wait_s = max(0.0, (start_at - datetime.now(timezone.utc)).total_seconds())
        return float(receiver.timeout_seconds) + wait_s + session.duration_s

    return limit


def capture_function(session: Session, io: CaptureIO = CaptureIO()) -> CaptureOne:
    """The `capture_one(receiver, attempt)` coroutine for the acquisition policy: each receiver
    by its source from the registry, with the I/O the edge gives (`io`). A live source connects
    its kind's connect margin before `io.start_at` (session_start); an attempt that begins after
    it (a retry) cannot record from it."""
    start_at = io.start_at

    async def capture_one(receiver: Receiver, attempt: int) -> Capture:
        check_live_window(session, [receiver])
        source = source_for(session, receiver)
        if source.live and start_at is not None:
            ahead_s = (start_at - datetime.now(timezone.utc)).total_seconds()
            if ahead_s <= 0:
                raise StartMissedError(receiver.id, f"was not streaming at the session's start instant "
                                                    f"{start_at.isoformat()}: attempt {attempt} began {-ahead_s:.3f} s "
                                                    "after it")
            await asyncio.sleep(max(0.0, ahead_s - source.connect_margin_s))
        return await source.capture(session, receiver, io)

    return capture_one
