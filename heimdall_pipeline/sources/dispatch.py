"""Which source records a receiver for a session, and the rule that live sources cannot
re-record the past. Pure: no Dagster, no storage."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.sessions import Session
from heimdall_pipeline.capture import Capture
from heimdall_pipeline.sources.acquisition import AcquisitionError, CaptureOne
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


def capture_function(session: Session, io: CaptureIO = CaptureIO()) -> CaptureOne:
    """The `capture_one(receiver, attempt)` coroutine for the acquisition policy: each receiver
    by its source from the registry, with the I/O the edge gives (`io`)."""

    async def capture_one(receiver: Receiver, attempt: int) -> Capture:
        check_live_window(session, [receiver])
        return await source_for(session, receiver).capture(session, receiver, io)

    return capture_one
