"""What every source of IQ is: the `Source` interface the registry, the session validation, the
receiver validation and the acquisition use. Pure: no Dagster, no storage.

A source kind is one module (see sources/kinds/) with one `Source` subclass, registered by one
line in sources/registry.py. The class states its facts (kind, URL schemes, live or not, the
frequencies and sample rates it can deliver) and implements `capture`; the validation shared by
every kind lives here and may be extended by a kind (call super()).

A *live* source records the present moment (a KiwiSDR over the network): it cannot record a
session whose time has passed (the live-window check in sources/dispatch.py). The live receivers
of a session record the same moment: each connects and tunes first, then stores samples from one
start instant (`capture(..., start_at=...)`), the session's scheduled time or, when that is
nearer, the launch plus the longest `connect_margin_s` of their kinds. A non-live source
produces the same capture whenever asked: the simulator computes it, a `recording` source would
read stored files (e.g. kiwirecorder WAV files named by receiver.url).
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable
from datetime import datetime
from typing import ClassVar
from urllib.parse import urlparse

from heimdall_pipeline.capture import Capture
from heimdall_pipeline.receivers import InvalidReceiverError, Receiver
from heimdall_pipeline.sessions import InvalidSessionRequestError, Session

# (batch, file name) -> the uploaded file's bytes, None when it is not there
UploadReader = Callable[[str, str], "bytes | None"]


@dataclasses.dataclass(frozen=True)
class CaptureIO:
    """What the edge (the Dagster resources, a CLI command) hands a source to record with: a source
    never builds connections or reads secrets from the environment itself."""

    password: str = ""  # for receivers that require one (KiwiSDRs); from the environment, never stored
    read_upload: UploadReader | None = None  # the bucket's uploaded recordings (the `recording` kind)
    # live sources: the instant of the first stored sample (aware UTC, dispatch.session_start); a
    # receiver not streaming by then raises StartMissedError. Sources that are not live ignore it.
    start_at: datetime | None = None


class Source(abc.ABC):
    """One kind of receiver: how it is validated and how it records a session."""

    kind: ClassVar[str]
    # URL schemes a receiver of this kind may use (its `url` names the receiver or the files)
    url_schemes: ClassVar[tuple[str, ...]]
    # True when it records the present moment only (cannot re-record a past session)
    live: ClassVar[bool]
    # live sources: the time from the launch until a receiver of this kind streams, tuned and
    # settled (connect, handshake, tune, the server's re-tune); the session's start instant is
    # at least this far after the launch
    connect_margin_s: ClassVar[float] = 0.0
    # the top of a receiver's range when the receiver does not state its own max_frequency_hz
    default_max_frequency_hz: ClassVar[float]
    # the nominal sample rates it delivers; None = any rate within the session limits
    sample_rates_hz: ClassVar[tuple[float, ...] | None] = None
    # True when it can stand in for a receiver of any kind, from its position alone (a simulator)
    records_any_receiver: ClassVar[bool] = False
    # True when its captures come from a described transmitter (the session's `transmitter`)
    takes_transmitter: ClassVar[bool] = False
    # True when a receiver's URL must name a host
    url_needs_host: ClassVar[bool] = False
    # False for a source that only replays a receiver's own recordings: such receivers join a
    # session only when named (validation.default_receivers)
    records_requested_sessions: ClassVar[bool] = True

    def frequency_range_hz(self, receiver: Receiver) -> tuple[float, float]:
        return (receiver.min_frequency_hz, receiver.max_frequency_hz or self.default_max_frequency_hz)

    def validate_receiver(self, receiver: Receiver) -> None:
        """Raises InvalidReceiverError naming the field when `receiver` cannot be of this kind."""
        parsed = urlparse(receiver.url or "")
        if parsed.scheme not in self.url_schemes:
            raise InvalidReceiverError(
                "url", f"{receiver.url!r} must use one of the schemes {', '.join(self.url_schemes)} "
                       f"for a {self.kind} receiver")
        if self.url_needs_host and not parsed.hostname:
            raise InvalidReceiverError("url", f"{receiver.url!r} has no host")

    def validate_session(self, session: Session, receiver: Receiver) -> None:
        """Raises InvalidSessionRequestError naming the field when this source cannot record
        `receiver` for `session` (wrong receiver kind, frequency outside its range, a sample rate
        it does not deliver)."""
        if receiver.kind != self.kind and not self.records_any_receiver:
            raise InvalidSessionRequestError(
                "source_kind", f"receiver {receiver.id!r} is a {receiver.kind} receiver and cannot be "
                               f"recorded as {self.kind}")
        low, high = self.frequency_range_hz(receiver)
        if not low <= session.center_frequency_hz <= high:
            raise InvalidSessionRequestError(
                "center_frequency_hz",
                f"{session.center_frequency_hz / 1e6:g} MHz is outside receiver {receiver.id!r} ({receiver.kind}) "
                f"range {low / 1e6:g}..{high / 1e6:g} MHz")
        rates = self.sample_rates_hz
        if rates is not None and not any(math.isclose(session.sample_rate_hz, r) for r in rates):
            allowed = ", ".join(f"{r:g}" for r in rates)
            raise InvalidSessionRequestError(
                "sample_rate_hz", f"{session.sample_rate_hz:g} Hz is not available on {self.kind} receiver "
                                  f"{receiver.id!r} (only {allowed} Hz)")

    def prepare(self) -> None:
        """Loads what its captures need (e.g. its client's modules) before a session's start
        instant is fixed, so the connect margin is spent connecting, not importing."""

    @abc.abstractmethod
    async def capture(self, session: Session, receiver: Receiver, io: CaptureIO) -> Capture:
        """Records `receiver` for `session` with what the edge gave it (`io`: the password, the
        upload reader, and for live sources the start instant `io.start_at`). Raises
        AcquisitionError (transient or not) when it cannot; the acquisition policy applies the
        time limit and retries around this call."""
