"""The `kiwisdr` kind: a live KiwiSDR on the network, recorded over its IQ websocket."""

from __future__ import annotations

from heimdall_pipeline.capture import Capture
from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.sessions import Session
from heimdall_pipeline.sources.base import CaptureIO, Source


class KiwiSDRSource(Source):
    kind = "kiwisdr"
    url_schemes = ("http", "https", "ws", "wss")
    url_needs_host = True
    live = True
    # connect and handshake (~1 s over the internet, more through a proxy) plus the server's
    # re-tune 1.5 s after the first tune, which the client lets settle (RETUNE_SETTLE_S)
    connect_margin_s = 5.0
    # A plain KiwiSDR tunes 0..30 MHz (32 MHz on some); the server reports its own bandwidth.
    default_max_frequency_hz = 30e6
    # one nominal IQ rate; the true rate (e.g. 12001.135) is measured and recorded
    sample_rates_hz = (12_000.0,)

    def prepare(self) -> None:
        # The client (aiohttp, scipy.signal) loads with the first session, not the code location;
        # on a busy machine that takes seconds, which must not eat the connect margin.
        import heimdall_pipeline.sources.kiwisdr  # noqa: F401

    async def capture(self, session: Session, receiver: Receiver, io: CaptureIO) -> Capture:
        from heimdall_pipeline.sources.kiwisdr import capture_iq  # loaded by prepare()

        return await capture_iq(receiver, session_key=session.session_key,
                                center_frequency_hz=session.center_frequency_hz, duration_s=session.duration_s,
                                start_at=io.start_at, password=io.password,
                                frequency_range_hz=self.frequency_range_hz(receiver))
