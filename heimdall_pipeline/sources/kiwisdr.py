"""KiwiSDR IQ client (aiohttp websocket). Pure: no Dagster, no storage.

Wire protocol (as in the reference client jks-prv/kiwiclient ``kiwi/client.py``):

- websocket ``ws://HOST:PORT/<unix-ms>/SND`` (``wss`` for an ``https`` receiver url);
- client text frames start with ``SET ``; ``SET auth t=kiwi p=<password>`` goes first;
- server frames are binary with a 3-byte tag. ``MSG`` + one byte + space separated
  ``name=value`` pairs: ``too_busy`` (all channels taken), ``badp`` (0 = accepted, else refused),
  ``redirect=<url-encoded url>``, ``down``, ``version_maj``/``version_min``, ``bandwidth=Hz``,
  ``freq_offset=kHz``, ``audio_rate`` (answered with ``SET AR OK in=<rate> out=44100``),
  ``sample_rate`` (the true rate, e.g. 12001.135; the client then configures the channel:
  ``SET mod=iq low_cut= high_cut= freq=<kHz, 3 decimals>``, AGC off with fixed gain,
  ``SET compression=0``, ``SET squelch=0 max=0``);
- ``SND`` + ``<BI`` flags, sequence + ``>H`` S-meter (RSSI dBm = 0.1*v - 127) + data. In IQ
  mode (flag 0x08) data = 10-byte GPS header ``<BBII`` (last_gps_solution, dummy, gpssec,
  gpsnsec) + interleaved int16 I, Q, big-endian unless flag 0x80. Flag 0x02 = ADC overflow,
  0x10 = ADPCM compressed (never valid for IQ: refused with ``CompressedStreamError``).
- ``SET keepalive`` at most once a second, or the server drops the client.

Facts from the real server (jks-prv/Beagle_SDR_GPS ``rx/``) the client relies on:

- ``too_busy=N``, ``redirect=URL`` and ``reason_disabled=<text> down=N`` (0 disabled, 1 update,
  2 backup in progress) can arrive as soon as the websocket opens, before ``SET auth`` is answered.
- ``badp``: 0 accepted; 1 wrong password; 2 still starting, 5 another connection from this
  address, 6 database update (retry in a minute) are temporary; 3, 4, 7 are final.
- The version line carries ``freq_offset`` (kHz) of a receiver behind a converter: it tunes
  ``freq_offset .. freq_offset + bandwidth`` and ``SET mod=... freq=`` takes the frequency *minus*
  the offset (the reference client: "API requires baseband freq").
- No audio flows before the server has frequency, mode, passband, AGC and ``AR OK``.
- About 1.5 s after the first tune the server sets the frequency again (a workaround for an IQ
  phase rotation): the samples before it are suspect. The client therefore starts the stored
  capture ``retune_settle_s`` (1.75 s) of stream samples after the first IQ sample; since the
  server streams only after the tune, counted in samples this bound holds whatever the network
  latency. ``details["retune"]`` says what was skipped (or, with ``retune_settle_s=0``, which
  stored samples may contain the re-tune).
- ``DAT`` frames (spectrum data) may appear on the sound stream: logged and skipped.
- Dropped frames (sequence gaps) are filled with zeros so that sample index = time; each gap is
  listed in ``details["sequence_gaps"]`` (stored as a SigMF annotation) and counted in
  ``details["quality"]``.

Power scale: samples are ``int16 / 32768`` (full scale = 1.0), i.e. on the ADC's scale
(``Capture.power_unit = "dBFS"``). Each SND frame carries the S-meter, which the KiwiSDR computes
on the same passband-filtered samples (before the fixed gain that AGC-off applies) as an
exponential average of the instantaneous power in dB (time constant 10 ms) plus the owner's
S-meter calibration, sent truncated to 0.1 dB steps (the client adds half a step). The client runs the same estimator over the IQ it
receives and, for every usable frame, takes offset = S-meter dBm - IQ dBFS at the frame's end;
``Capture.calibration = {"offset_db": mean, "spread_db": standard deviation, "frames": n}``, or
None when the S-meter does not allow it (pinned at its -127 / +3.4 dBm limits, or fewer than
``MIN_CALIBRATION_FRAMES`` usable frames). Averaging dB the same way as the server matters: for
noise a dB average reads 2.5 dB below the mean power.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import struct
import time
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote, urlparse

import aiohttp
import numpy as np
import scipy.signal

from heimdall_pipeline.dsp.timing import (
    NS, SECONDS_PER_WEEK, format_utc_ns, gps_ns_to_utc_ns, leap_seconds_at, resolve_gps_ns, utc_to_gps_ns,
)
from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.sources.acquisition import AcquisitionError, AcquisitionTimeoutError, StartMissedError
from heimdall_pipeline.capture import Capture, GpsTimestamp

__all__ = [
    "AcquisitionError",
    "AcquisitionTimeoutError",
    "ReceiverBusyError",
    "ReceiverAuthError",
    "ReceiverDownError",
    "ReceiverConnectionError",
    "ReceiverTimeoutError",
    "FrequencyOutOfRangeError",
    "ProtocolError",
    "CompressedStreamError",
    "StreamInterruptedError",
    "StartMissedError",
    "SndFrame",
    "capture_iq",
    "check_frequency",
    "decode_snd_frame",
    "kiwi_stream_url",
    "parse_msg",
    "rssi_dbm_from_smeter",
    "smeter_average_dbfs",
]

log = logging.getLogger(__name__)

FLAG_ADC_OVERFLOW = 0x02
FLAG_STEREO_IQ = 0x08
FLAG_COMPRESSED = 0x10
FLAG_LITTLE_ENDIAN = 0x80
GPS_HEADER = struct.Struct("<BBII")
SND_HEADER = struct.Struct("<BI")
SMETER = struct.Struct(">H")
INT16_FULL_SCALE = 32768.0
AR_OK_OUT_RATE = 44100
NO_GPS_FIX_AGES = (254, 255)  # last_gps_solution without GNSS time (255: no GPS clock)
TRANSIENT_BADP = {"2": "the server is still starting up",
                  "5": "another connection from this address is open",
                  "6": "the server is updating its database (retry in a minute)"}
FINAL_BADP = {"1": "wrong password (or every channel without a password is in use)",
              "3": "connections from this address are not allowed",
              "4": "no admin password is set",
              "7": "another admin connection is open"}
DOWN_REASONS = {"0": "disabled", "1": "updating its software", "2": "making a backup"}
RETUNE_DELAY_S = 1.5  # the server re-sets the frequency this long after the first tune
RETUNE_SETTLE_S = 1.75  # stream samples skipped: the re-tune plus margin for the server's 100 ms polling
SMETER_TIME_CONSTANT_S = 0.01  # the server's S-meter attack time constant
SMETER_MIN_VALUE, SMETER_MAX_VALUE = 0, 1304  # -127 dBm and +3.4 dBm: the server clamps there
SMETER_STEP_DB = 0.1
MIN_CALIBRATION_FRAMES = 3
# the weakest power the S-meter estimator sees: int16 rounding noise (1/12 LSB^2 per component)
QUANTIZATION_POWER = (1.0 / 6.0) / INT16_FULL_SCALE**2
# Two GNSS stamps agree when they differ by less than this from what the samples between them
# say; a stamp that agrees with the one before becomes the stream's clock (one stray stamp, as
# real servers send after a fix, never moves it).
STAMP_AGREEMENT_NS = 1_000_000


# --------------------------------------------------------------------------------------- errors


class ReceiverBusyError(AcquisitionError):
    """All channels of the KiwiSDR are in use (``too_busy``). Transient."""

    transient = True


class ReceiverAuthError(AcquisitionError):
    """The KiwiSDR refused the password (``badp``). Not transient."""

    transient = False


class ReceiverDownError(AcquisitionError):
    """The KiwiSDR says it is down (``down``). Transient."""

    transient = True


class ReceiverConnectionError(AcquisitionError):
    """The websocket could not be opened (refused, DNS, TLS, HTTP 5xx). Transient."""

    transient = True


class ReceiverTimeoutError(AcquisitionTimeoutError):
    """Connecting, or waiting for the next frame, took too long. Transient."""

    transient = True


class FrequencyOutOfRangeError(AcquisitionError):
    """The receiver cannot tune the requested frequency. Not transient."""

    transient = False


class ProtocolError(AcquisitionError):
    """The server sent something that is not the KiwiSDR protocol. Not transient."""

    transient = False


class CompressedStreamError(ProtocolError):
    """An IQ frame arrived ADPCM-compressed (flag 0x10); IQ must be uncompressed."""


class StreamInterruptedError(AcquisitionError):
    """The stream ended before enough samples arrived. Transient."""

    transient = True

    def __init__(self, receiver_id: str, message: str, *, samples_received: int, samples_expected: int | None):
        self.samples_received = samples_received
        self.samples_expected = samples_expected
        expected = "?" if samples_expected is None else str(samples_expected)
        super().__init__(receiver_id, f"{message}: {samples_received} of {expected} samples arrived")


# ------------------------------------------------------------------------------- pure helpers


def rssi_dbm_from_smeter(value: int) -> float:
    return 0.1 * value - 127.0


def smeter_average_dbfs(samples: np.ndarray, sample_rate_hz: float, state_db: float | None = None,
                        ) -> tuple[np.ndarray, float]:
    """The KiwiSDR S-meter's estimator applied to full-scale IQ: an exponential average (10 ms
    time constant) of the instantaneous power in dB. Returns the averaged dBFS after every sample
    and the final state; ``state_db=None`` starts from the mean dB of the samples (warm start)."""
    power_db = 10.0 * np.log10(np.maximum(np.abs(samples.astype(np.complex128)) ** 2, QUANTIZATION_POWER))
    if power_db.size == 0:
        return power_db, float(state_db or 0.0)
    alpha = 1.0 - math.exp(-1.0 / (sample_rate_hz * SMETER_TIME_CONSTANT_S))
    start = float(np.mean(power_db)) if state_db is None else float(state_db)
    averaged, _ = scipy.signal.lfilter([alpha], [1.0, alpha - 1.0], power_db, zi=[(1.0 - alpha) * start])
    return averaged, float(averaged[-1])


def kiwi_stream_url(receiver_url: str, timestamp_ms: int, stream: str = "SND") -> str:
    """``http://h:8073`` -> ``ws://h:8073/<ms>/SND`` (https -> wss; ws/wss kept)."""
    parsed = urlparse(receiver_url)
    schemes = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
    if parsed.scheme not in schemes or not parsed.netloc:
        raise ValueError(f"{receiver_url!r} is not an http(s)/ws(s) KiwiSDR url")
    path = parsed.path.rstrip("/")
    return f"{schemes[parsed.scheme]}://{parsed.netloc}{path}/{int(timestamp_ms)}/{stream}"


def parse_msg(body: bytes) -> dict[str, str | None]:
    """Parse a MSG frame body (after the 3-byte tag; the first byte is skipped like the reference)."""
    text = bytes(body[1:]).decode("utf-8")
    params: dict[str, str | None] = {}
    for pair in text.split(" "):
        if not pair:
            continue
        if "=" in pair:
            name, value = pair.split("=", 1)
            params[name] = value
        else:
            params[pair] = None
    return params


@dataclasses.dataclass(frozen=True)
class SndFrame:
    flags: int
    sequence: int
    smeter: int
    iq: np.ndarray | None  # complex64, raw int16 units; None for a non-IQ (audio) frame
    last_gps_solution: int = 0
    gps_seconds: int = 0
    gps_nanoseconds: int = 0

    @property
    def rssi_dbm(self) -> float:
        return rssi_dbm_from_smeter(self.smeter)

    @property
    def is_iq(self) -> bool:
        return bool(self.flags & FLAG_STEREO_IQ)

    @property
    def adc_overflow(self) -> bool:
        return bool(self.flags & FLAG_ADC_OVERFLOW)

    @property
    def compressed(self) -> bool:
        return bool(self.flags & FLAG_COMPRESSED)

    @property
    def has_gps_solution(self) -> bool:
        return (self.last_gps_solution not in NO_GPS_FIX_AGES
                and (self.gps_seconds, self.gps_nanoseconds) != (0, 0))


def decode_snd_frame(body: bytes, receiver_id: str = "?") -> SndFrame:
    """Decode an SND frame body (after the 3-byte tag). Raises ProtocolError on malformed data."""
    if len(body) < SND_HEADER.size + SMETER.size:
        raise ProtocolError(receiver_id, f"SND frame of {len(body)} bytes is shorter than its 7-byte header")
    flags, seq = SND_HEADER.unpack_from(body, 0)
    (smeter,) = SMETER.unpack_from(body, SND_HEADER.size)
    data = memoryview(body)[SND_HEADER.size + SMETER.size:]
    if not flags & FLAG_STEREO_IQ:
        return SndFrame(flags=flags, sequence=seq, smeter=smeter, iq=None)
    if flags & FLAG_COMPRESSED:
        raise CompressedStreamError(
            receiver_id, f"IQ frame {seq} is ADPCM-compressed (flags 0x{flags:02x}); IQ needs 'SET compression=0'"
        )
    if len(data) < GPS_HEADER.size:
        raise ProtocolError(receiver_id, f"IQ frame {seq} has {len(data)} data bytes, less than the 10-byte GPS header")
    last_sol, _dummy, gpssec, gpsnsec = GPS_HEADER.unpack_from(data, 0)
    payload = data[GPS_HEADER.size:]
    if len(payload) % 4:
        raise ProtocolError(receiver_id, f"IQ frame {seq} payload of {len(payload)} bytes is not whole int16 I,Q pairs")
    dtype = "<i2" if flags & FLAG_LITTLE_ENDIAN else ">i2"
    ints = np.frombuffer(payload, dtype=dtype).astype(np.float32).reshape(-1, 2)
    iq = np.empty(ints.shape[0], dtype=np.complex64)
    iq.real = ints[:, 0]
    iq.imag = ints[:, 1]
    return SndFrame(flags=flags, sequence=seq, smeter=smeter, iq=iq, last_gps_solution=last_sol,
                    gps_seconds=gpssec, gps_nanoseconds=gpsnsec)


def check_frequency(receiver: Receiver, center_frequency_hz: float, frequency_range_hz: tuple[float, float]) -> None:
    """Raise FrequencyOutOfRangeError unless the frequency is in the receiver's registered range."""
    low, high = frequency_range_hz
    if not low <= center_frequency_hz <= high:
        raise FrequencyOutOfRangeError(
            receiver.id,
            f"{receiver.name} cannot tune {center_frequency_hz / 1e6:.6g} MHz: it covers "
            f"{low / 1e6:.6g}-{high / 1e6:.6g} MHz",
        )


# ----------------------------------------------------------------------------- the client


class _Redirect(Exception):
    def __init__(self, url: str):
        self.url = url


class _IQStream:
    """State of one websocket conversation."""

    def __init__(self, receiver: Receiver, *, center_frequency_hz: float, duration_s: float, password: str,
                 passband_hz: tuple[float, float], frame_timeout_s: float, keepalive_interval_s: float,
                 ident_user: str | None, retune_settle_s: float, start_at: datetime | None):
        self.receiver = receiver
        self.rid = receiver.id
        self.center_frequency_hz = float(center_frequency_hz)
        self.duration_s = float(duration_s)
        self.password = password
        self.passband_hz = passband_hz
        self.frame_timeout_s = frame_timeout_s
        self.keepalive_interval_s = max(1.0, float(keepalive_interval_s))
        self.ident_user = ident_user
        self.retune_settle_s = float(retune_settle_s)
        self.start_at_ns = None if start_at is None else _utc_ns(start_at)
        now = datetime.now(timezone.utc)
        # GNSS tags carry seconds of the week: the week and GPS - UTC come from the client's clock
        self.anchor_gps_ns = utc_to_gps_ns(now)
        self.leap_seconds = leap_seconds_at(now)
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        # server facts
        self.version_major: int | None = None
        self.version_minor: int | None = None
        self.bandwidth_hz: float | None = None
        self.freq_offset_khz: float = 0.0
        self.tuned_khz: float | None = None
        self.reason_disabled: str | None = None
        self.audio_rate: int | None = None
        self.sample_rate: float | None = None
        self.configured = False
        # stream
        self.samples_expected: int | None = None
        self.chunks: list[np.ndarray] = []
        self.n_samples = 0
        self.gps: list[GpsTimestamp] = []
        self.gps_frames_with_solution = 0
        self.gps_max_solution_age: int | None = None
        self.frames_received = 0
        self.frames_used = 0
        self.skipped_non_iq_frames = 0
        self.skipped_dat_frames = 0
        self.settle_samples: int | None = None
        self.stream_samples = 0  # samples the server has produced since its first IQ frame, gaps included
        self.skipped_settle_samples = 0
        self.started = False
        # the stream's clock: (stream sample index, UTC ns) from the client's clock at the first
        # IQ frame, and from the latest GNSS stamp that agreed with the one before it
        self.client_clock: tuple[int, int] | None = None
        self.gnss_clock: tuple[int, int] | None = None
        self.last_stamp: tuple[int, int] | None = None
        self.start_decided_by: str | None = None  # the clock that placed the start instant
        self.waited_frames = 0  # settled frames before the start instant
        self.last_frame_len = 0
        self.smeter_state_db: float | None = None
        self.calibration_offsets: list[float] = []
        self.smeter_pinned_frames = 0
        self.out_of_order_frames = 0
        self.dropped_frames = 0
        self.sequence_gaps: list[dict[str, int]] = []
        self.last_seq: int | None = None
        self.adc_overflow_frames = 0
        self.rssi_dbm: list[float] = []
        self.first_frame_utc: datetime | None = None
        self.keepalives_sent = 0
        self._keepalive_task: asyncio.Task | None = None

    # -- sending
    async def send(self, text: str) -> None:
        assert self.ws is not None
        try:
            await self.ws.send_str(text)
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            raise self.interrupted(f"sending {text.split(' ')[1] if ' ' in text else text!r} failed ({exc})") from exc

    async def _keepalive_loop(self) -> None:
        with contextlib.suppress(Exception):
            while True:
                await asyncio.sleep(self.keepalive_interval_s)
                if self.ws is None or self.ws.closed:
                    return
                await self.ws.send_str("SET keepalive")
                self.keepalives_sent += 1

    def interrupted(self, message: str) -> StreamInterruptedError:
        return StreamInterruptedError(self.rid, message, samples_received=self.n_samples,
                                      samples_expected=self.samples_expected)

    # -- range checks
    @property
    def freq_offset_hz(self) -> float:
        return self.freq_offset_khz * 1e3

    def check_server_range(self) -> None:
        if self.bandwidth_hz is None:
            return
        low = self.freq_offset_hz
        high = self.freq_offset_hz + self.bandwidth_hz
        if not low <= self.center_frequency_hz <= high:
            raise FrequencyOutOfRangeError(
                self.rid,
                f"{self.receiver.name} cannot tune {self.center_frequency_hz / 1e6:.6g} MHz: the server reports "
                f"a range of {low / 1e6:.6g}-{high / 1e6:.6g} MHz",
            )

    # -- conversation
    async def run(self, session: aiohttp.ClientSession, url: str, connect_timeout_s: float) -> None:
        try:
            ws = await asyncio.wait_for(
                session.ws_connect(url, autoclose=True, autoping=True, heartbeat=None, max_msg_size=0),
                timeout=connect_timeout_s,
            )
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise ReceiverTimeoutError(self.rid, f"could not connect to {url} within {connect_timeout_s:g} s") from exc
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status >= 500 or exc.status == 429:
                raise ReceiverConnectionError(self.rid, f"{url} answered HTTP {exc.status}") from exc
            raise ProtocolError(self.rid, f"{url} is not a KiwiSDR SND websocket (HTTP {exc.status})") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise ReceiverConnectionError(self.rid, f"cannot connect to {url}: {exc}") from exc
        self.ws = ws
        try:
            await self.send(f"SET auth t=kiwi p={self.password}")
            if self.ident_user:
                await self.send(f"SET ident_user={self.ident_user}")
            while not self.done:
                try:
                    msg = await asyncio.wait_for(ws.receive(), timeout=self.frame_timeout_s)
                except (asyncio.TimeoutError, TimeoutError) as exc:
                    raise ReceiverTimeoutError(
                        self.rid,
                        f"no frame from {url} for {self.frame_timeout_s:g} s "
                        f"({self.n_samples} of {self.samples_expected if self.samples_expected is not None else '?'} samples arrived)",
                    ) from exc
                if msg.type == aiohttp.WSMsgType.BINARY:
                    await self.handle_frame(msg.data)
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    raise ProtocolError(self.rid, f"unexpected text frame {msg.data[:40]!r} (KiwiSDR frames are binary)")
                elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                    raise self.interrupted("the server closed the connection")
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    raise self.interrupted(f"the connection failed ({ws.exception()})")
        finally:
            if self._keepalive_task is not None:
                self._keepalive_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._keepalive_task
                self._keepalive_task = None
            with contextlib.suppress(Exception):
                await ws.close()
            self.ws = None

    @property
    def done(self) -> bool:
        return self.samples_expected is not None and self.n_samples >= self.samples_expected

    async def handle_frame(self, data: bytes) -> None:
        tag = bytes(data[:3])
        body = data[3:]
        if tag == b"MSG":
            try:
                params = parse_msg(body)
            except UnicodeDecodeError as exc:
                raise ProtocolError(self.rid, "MSG frame is not UTF-8 text") from exc
            for name, value in params.items():
                await self.handle_param(name, value)
        elif tag == b"SND":
            self.handle_snd(body)
        elif tag == b"DAT":
            # spectrum data the server may put on the sound stream; not asked for, not needed
            self.skipped_dat_frames += 1
            log.info("receiver %s: skipped a DAT frame of %d bytes", self.rid, len(data))
        elif tag in (b"EXT", b"W/F"):
            return
        else:
            raise ProtocolError(self.rid, f"unknown frame tag {tag!r} ({len(data)} bytes)")

    async def handle_param(self, name: str, value: str | None) -> None:
        try:
            await self._handle_param(name, value)
        except ValueError as exc:
            raise ProtocolError(self.rid, f"bad MSG value {name}={value!r}") from exc

    async def _handle_param(self, name: str, value: str | None) -> None:
        if name == "too_busy":
            raise ReceiverBusyError(self.rid, f"all {value} channels of {self.receiver.name} are in use")
        if name == "badp":
            if value in (None, "0"):
                return
            if value in TRANSIENT_BADP:
                raise ReceiverAuthError(self.rid, f"{self.receiver.name} refused the connection for now "
                                        f"(badp={value}: {TRANSIENT_BADP[value]})", transient=True)
            reason = FINAL_BADP.get(value, "refused")
            raise ReceiverAuthError(self.rid, f"{self.receiver.name} refused the connection (badp={value}: {reason})")
        if name == "redirect":
            raise _Redirect(unquote(value or ""))
        if name == "reason_disabled":
            self.reason_disabled = unquote(value or "")
            return
        if name == "down":
            what = f" ({DOWN_REASONS.get(value, 'reason unknown')}, down={value})" if value is not None else ""
            reason = f": {self.reason_disabled}" if self.reason_disabled else ""
            raise ReceiverDownError(self.rid, f"{self.receiver.name} is down{what}{reason}")
        if name == "version_maj":
            self.version_major = int(value or "")
        elif name == "version_min":
            self.version_minor = int(value or "")
        elif name == "bandwidth":
            self.bandwidth_hz = float(value or "")
            self.check_server_range()
        elif name == "freq_offset":
            self.freq_offset_khz = float(value or "")
            self.check_server_range()
        elif name == "audio_rate":
            self.audio_rate = int(float(value or ""))
            await self.send(f"SET AR OK in={self.audio_rate} out={AR_OK_OUT_RATE}")
        elif name == "sample_rate":
            rate = float(value or "")
            if not (math.isfinite(rate) and rate > 0):
                raise ValueError(value)
            self.sample_rate = rate
            self.samples_expected = max(1, int(round(self.duration_s * rate)))
            if not self.configured:
                await self.configure()

    async def configure(self) -> None:
        self.check_server_range()
        low, high = self.passband_hz
        # the server tunes relative to its band start: the frequency minus the converter offset
        self.tuned_khz = round(self.center_frequency_hz / 1e3 - self.freq_offset_khz, 3)
        await self.send(f"SET mod=iq low_cut={int(round(low))} high_cut={int(round(high))} freq={self.tuned_khz:.3f}")
        await self.send("SET agc=0 hang=0 thresh=-100 slope=6 decay=1000 manGain=50")
        await self.send("SET compression=0")
        await self.send("SET squelch=0 max=0")
        await self.send("SET keepalive")
        self.keepalives_sent += 1
        self.configured = True
        self._keepalive_task = asyncio.create_task(self._keepalive_loop())

    def handle_snd(self, body: bytes) -> None:
        self.frames_received += 1
        frame = decode_snd_frame(body, self.rid)
        if frame.iq is None:
            if self.last_seq is None:
                # audio left over from before 'SET mod=iq' took effect
                self.skipped_non_iq_frames += 1
                return
            raise ProtocolError(self.rid, f"frame {frame.sequence} is not IQ (flags 0x{frame.flags:02x}) mid-stream")
        if self.samples_expected is None or self.sample_rate is None:
            raise ProtocolError(self.rid, "IQ frame arrived before the sample_rate message")
        missing = 0
        if self.last_seq is not None:
            delta = (frame.sequence - self.last_seq) & 0xFFFFFFFF
            if delta == 0 or delta >= 0x80000000:
                self.out_of_order_frames += 1
                return
            missing = delta - 1
        if self.settle_samples is None:
            self.settle_samples = int(math.ceil(self.retune_settle_s * self.sample_rate))
        iq = frame.iq
        gap_samples = missing * (self.last_frame_len or len(iq))
        self.stream_samples += gap_samples
        # the S-meter average restarts after a gap: the server's ran on samples we never got
        warm = missing == 0 and self.smeter_state_db is not None
        average_db, self.smeter_state_db = smeter_average_dbfs(iq / np.float32(INT16_FULL_SCALE), self.sample_rate,
                                                               self.smeter_state_db if warm else None)
        frame_start = self.stream_samples
        self.stream_samples += len(iq)
        self.last_seq = frame.sequence
        self.last_frame_len = len(iq)
        self.observe_clock(frame, frame_start, len(iq))
        if not self.started:
            if frame_start < self.settle_samples:
                self.skipped_settle_samples = self.stream_samples
                return
            cut = self.start_cut(frame_start, len(iq))
            if cut is None:  # the start instant is still ahead
                self.waited_frames += 1
                self.skipped_settle_samples = self.stream_samples
                return
            self.started = True
            self.skipped_settle_samples = frame_start + cut
            iq = iq[cut:]
            frame = _advanced(frame, cut, self.sample_rate)
        elif missing:
            self.dropped_frames += missing
            fill = min(gap_samples, self.samples_expected - self.n_samples)
            self.sequence_gaps.append({"sample_index": self.n_samples, "sample_count": fill,
                                       "after_sequence": (frame.sequence - delta) & 0xFFFFFFFF,
                                       "missing_frames": missing})
            # zeros keep sample index = time; the gap is annotated where the capture is stored
            self.chunks.append(np.zeros(fill, np.complex64))
            self.n_samples += fill
            if self.done:
                return
        if self.first_frame_utc is None:
            # the frame's first sample was taken about one frame duration before it arrived
            self.first_frame_utc = datetime.now(timezone.utc) - timedelta(seconds=len(iq) / self.sample_rate)
        self.gps.append(GpsTimestamp(sample_index=self.n_samples, gps_seconds=frame.gps_seconds,
                                     gps_nanoseconds=frame.gps_nanoseconds, has_solution=frame.has_gps_solution,
                                     fix_age_s=frame.last_gps_solution))
        if frame.has_gps_solution:
            self.gps_frames_with_solution += 1
            if self.gps_max_solution_age is None or frame.last_gps_solution > self.gps_max_solution_age:
                self.gps_max_solution_age = frame.last_gps_solution
        if frame.adc_overflow:
            self.adc_overflow_frames += 1
        self.rssi_dbm.append(frame.rssi_dbm)
        if not SMETER_MIN_VALUE < frame.smeter < SMETER_MAX_VALUE:
            self.smeter_pinned_frames += 1
        elif warm:
            # + half a step: the server truncates the S-meter to 0.1 dB steps
            self.calibration_offsets.append(frame.rssi_dbm + SMETER_STEP_DB / 2 - float(average_db[-1]))
        self.frames_used += 1
        keep = min(len(iq), self.samples_expected - self.n_samples)
        self.chunks.append(iq[:keep])
        self.n_samples += keep

    # -- the stream's clock and the start instant
    def observe_clock(self, frame: SndFrame, frame_start: int, frame_len: int) -> None:
        """Keeps the stream's clocks up to date with a frame that starts at stream index frame_start."""
        assert self.sample_rate is not None
        if self.client_clock is None:
            # the frame's first sample was taken about one frame duration before it arrived
            self.client_clock = (frame_start, time.time_ns() - round(frame_len * NS / self.sample_rate))
        if not frame.has_gps_solution:
            return
        stamp = (frame_start, gps_ns_to_utc_ns(resolve_gps_ns(frame.gps_seconds, frame.gps_nanoseconds,
                                                              self.anchor_gps_ns), self.leap_seconds))
        if self.last_stamp is not None and abs(stamp[1] - self.time_ns(frame_start, self.last_stamp)) < STAMP_AGREEMENT_NS:
            self.gnss_clock = stamp
        self.last_stamp = stamp

    def time_ns(self, stream_index: int, clock: tuple[int, int] | None = None) -> int:
        """UTC ns of a stream sample by a clock (default: GNSS where the stream has it)."""
        assert self.sample_rate is not None
        index, utc_ns = clock or self.gnss_clock or self.client_clock
        return utc_ns + round((stream_index - index) * NS / self.sample_rate)

    def start_cut(self, frame_start: int, frame_len: int) -> int | None:
        """How many of this frame's samples precede the start instant; None when the whole frame
        does. Raises StartMissedError when the frame begins after it: the receiver was not
        streaming (past its re-tune) by then."""
        assert self.sample_rate is not None
        self.start_decided_by = "gnss" if self.gnss_clock else "client_clock"
        if self.start_at_ns is None:
            return 0
        begins = self.time_ns(frame_start)
        one_sample_ns = NS / self.sample_rate
        if begins + frame_len * one_sample_ns <= self.start_at_ns:
            return None
        if begins > self.start_at_ns + one_sample_ns:
            raise StartMissedError(
                self.rid, f"was not streaming at the session's start instant {format_utc_ns(self.start_at_ns)}: its "
                          f"first sample past the server's re-tune was taken {(begins - self.start_at_ns) / NS:.3f} s "
                          f"later ({self.start_decided_by.replace('_', ' ')} time)")
        return min(frame_len - 1, max(0, math.ceil((self.start_at_ns - begins) / one_sample_ns - 1e-6)))

    def start_details(self) -> dict[str, Any]:
        """When the first stored sample was taken, by which clock, and how far from the start instant."""
        first = self.skipped_settle_samples
        source = "gnss" if self.gnss_clock else "client_clock"
        first_ns = self.time_ns(first)
        return {
            "requested_utc": None if self.start_at_ns is None else format_utc_ns(self.start_at_ns),
            "first_sample_utc": format_utc_ns(first_ns),
            "time_source": source,
            "decided_by": self.start_decided_by,
            "after_requested_s": None if self.start_at_ns is None else (first_ns - self.start_at_ns) / NS,
            "client_clock_minus_gnss_s": (None if self.gnss_clock is None
                                          else (self.time_ns(first, self.client_clock) - first_ns) / NS),
            "waited_frames": self.waited_frames,
        }

    def calibration(self) -> dict[str, Any] | None:
        """dBm - dBFS from the S-meter, or None when too few frames allow it (module docstring)."""
        if len(self.calibration_offsets) < MIN_CALIBRATION_FRAMES:
            return None
        offsets = np.asarray(self.calibration_offsets)
        return {"offset_db": float(np.mean(offsets)), "spread_db": float(np.std(offsets)),
                "frames": int(offsets.size)}

    def retune_details(self) -> dict[str, Any]:
        assert self.sample_rate is not None
        if self.retune_settle_s > 0:
            return {"handling": "skipped", "settle_s": self.retune_settle_s,
                    "skipped_samples": self.skipped_settle_samples}
        # kept from the first frame: the re-tune lies in the first RETUNE_DELAY_S (+ polling margin)
        return {"handling": "marked", "settle_s": 0.0, "skipped_samples": 0,
                "sample_count": min(self.n_samples, int(math.ceil(RETUNE_SETTLE_S * self.sample_rate)))}


def _utc_ns(value: datetime) -> int:
    if value.tzinfo is None:
        raise ValueError(f"start_at {value.isoformat()} has no time zone; pass an aware UTC datetime")
    delta = value.astimezone(timezone.utc) - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return ((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds) * 1_000


def _advanced(frame: SndFrame, samples: int, sample_rate: float) -> SndFrame:
    """The frame without its first `samples` samples, its GNSS tag moved to its new first sample."""
    if not samples:
        return frame
    assert frame.iq is not None
    gps_seconds, gps_nanoseconds = frame.gps_seconds, frame.gps_nanoseconds
    if frame.has_gps_solution:
        tag_ns = gps_seconds * NS + gps_nanoseconds + round(samples * NS / sample_rate)
        gps_seconds, gps_nanoseconds = divmod(tag_ns, NS)
        gps_seconds %= SECONDS_PER_WEEK
    return dataclasses.replace(frame, iq=frame.iq[samples:], gps_seconds=gps_seconds, gps_nanoseconds=gps_nanoseconds)


def _rssi_stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    arr = np.asarray(values, dtype=np.float64)
    mean_mw = float(np.mean(10.0 ** (arr / 10.0)))
    return {
        "count": int(arr.size),
        "min": float(arr.min()),
        "max": float(arr.max()),
        "median": float(np.median(arr)),
        "mean_dbm_power": 10.0 * math.log10(mean_mw),
    }


async def capture_iq(
    receiver: Receiver,
    *,
    session_key: str,
    center_frequency_hz: float,
    duration_s: float,
    start_at: datetime | None = None,
    password: str = "",
    frequency_range_hz: tuple[float, float] | None = None,
    passband_hz: tuple[float, float] = (-5000, 5000),
    session: aiohttp.ClientSession | None = None,
    connect_timeout_s: float = 10.0,
    frame_timeout_s: float = 10.0,
    keepalive_interval_s: float = 1.0,
    max_redirects: int = 2,
    ident_user: str | None = "heimdall",
    retune_settle_s: float = RETUNE_SETTLE_S,
) -> Capture:
    """Record ``duration_s`` of IQ from a KiwiSDR tuned to ``center_frequency_hz``.

    The frequency is checked against the registered receiver range (``frequency_range_hz``, given
    by the source kind; None leaves it to the server) before any connection and against the server's ``bandwidth``/``freq_offset`` messages. Exactly
    ``round(duration_s * reported_sample_rate)`` samples are returned (dBFS, with the S-meter
    calibration when there is one), starting ``retune_settle_s`` after the stream's first sample
    (past the server's re-tune; 0 keeps them and marks the re-tune region instead).

    ``start_at`` (aware UTC), when given, is the instant the first stored sample is taken: the
    samples before it are dropped, to the sample, by the frames' GNSS tags where the server has
    GNSS time (two consecutive tags that agree), else by the client's clock at the first frame.
    A receiver whose stream (past the re-tune) begins after ``start_at`` fails with
    ``StartMissedError``. ``Capture.start_time`` is the time of the first stored sample by the
    same clocks (GNSS where available); ``details["start"]`` says which clock and how far from
    ``start_at`` it is.

    Raises an ``AcquisitionError`` subclass (see module ``__all__``) on every failure.
    """
    if receiver.kind != "kiwisdr":
        raise ProtocolError(receiver.id, f"is a {receiver.kind!r} receiver, not a KiwiSDR")
    if not (duration_s > 0 and math.isfinite(duration_s)):
        raise ValueError(f"duration_s must be positive, got {duration_s!r}")
    low, high = passband_hz
    if not low < high:
        raise ValueError(f"passband_hz {passband_hz!r} must have low < high")
    if not (math.isfinite(retune_settle_s) and retune_settle_s >= 0):
        raise ValueError(f"retune_settle_s must be >= 0, got {retune_settle_s!r}")
    if frequency_range_hz is not None:
        check_frequency(receiver, center_frequency_hz, frequency_range_hz)

    own_session = session is None
    if own_session:
        session = aiohttp.ClientSession()
    redirects: list[str] = []
    base_url = receiver.url
    try:
        while True:
            url = kiwi_stream_url(base_url, int(time.time() * 1000))
            stream = _IQStream(receiver, center_frequency_hz=center_frequency_hz, duration_s=duration_s,
                               password=password, passband_hz=(low, high), frame_timeout_s=frame_timeout_s,
                               keepalive_interval_s=keepalive_interval_s, ident_user=ident_user,
                               retune_settle_s=retune_settle_s, start_at=start_at)
            try:
                await stream.run(session, url, connect_timeout_s)
                break
            except _Redirect as hop:
                if len(redirects) >= max_redirects:
                    raise ProtocolError(receiver.id, f"more than {max_redirects} redirects ({', '.join(redirects + [hop.url])})")
                try:
                    kiwi_stream_url(hop.url, 0)
                except ValueError as exc:
                    raise ProtocolError(receiver.id, f"redirect to an unusable url {hop.url!r}") from exc
                redirects.append(hop.url)
                base_url = hop.url
    finally:
        if own_session:
            await session.close()

    assert stream.sample_rate is not None and stream.samples_expected is not None
    raw = np.concatenate(stream.chunks) if stream.chunks else np.zeros(0, np.complex64)
    samples = (raw / np.float32(INT16_FULL_SCALE)).astype(np.complex64)
    start = stream.start_details()
    first_sample_ns = stream.time_ns(stream.skipped_settle_samples)
    details: dict[str, Any] = {
        "protocol": "kiwisdr-snd-iq",
        "stream_url": url,
        "redirects": redirects,
        "server_version": (f"{stream.version_major}.{stream.version_minor}"
                           if stream.version_major is not None else None),
        "reported_sample_rate_hz": stream.sample_rate,
        "nominal_audio_rate_hz": stream.audio_rate,
        "bandwidth_hz": stream.bandwidth_hz,
        "freq_offset_hz": stream.freq_offset_hz,
        "tuned_baseband_khz": stream.tuned_khz,
        "passband_hz": [float(low), float(high)],
        "samples_expected": stream.samples_expected,
        "frames_received": stream.frames_received,
        "frames_used": stream.frames_used,
        "skipped_non_iq_frames": stream.skipped_non_iq_frames,
        "skipped_dat_frames": stream.skipped_dat_frames,
        "out_of_order_frames": stream.out_of_order_frames,
        "dropped_frames": stream.dropped_frames,
        "sequence_gaps": stream.sequence_gaps,
        "quality": {"sequence_gaps": len(stream.sequence_gaps), "missing_frames": stream.dropped_frames,
                    "zero_filled_samples": int(sum(g["sample_count"] for g in stream.sequence_gaps)),
                    "adc_overflow_frames": stream.adc_overflow_frames},
        "retune": stream.retune_details(),
        "adc_overflow_frames": stream.adc_overflow_frames,
        "rssi_dbm": _rssi_stats(stream.rssi_dbm),
        "gps": {"frames": len(stream.gps), "frames_with_solution": stream.gps_frames_with_solution,
                "max_solution_age_s": stream.gps_max_solution_age},
        "keepalives_sent": stream.keepalives_sent,
        "measured_start_time_utc": stream.first_frame_utc.isoformat() if stream.first_frame_utc else None,
        "start": start,
        "sample_scale": 1.0 / INT16_FULL_SCALE,
        "smeter": {"usable_frames": len(stream.calibration_offsets), "pinned_frames": stream.smeter_pinned_frames},
    }
    calibration = stream.calibration()
    return Capture(
        session_key=session_key,
        receiver_id=receiver.id,
        samples=samples,
        sample_rate_hz=float(stream.sample_rate),
        center_frequency_hz=float(center_frequency_hz),
        start_time=datetime.fromtimestamp(first_sample_ns // NS, tz=timezone.utc) + timedelta(
            microseconds=round((first_sample_ns % NS) / 1_000)),
        source_kind="kiwisdr",
        gps_timestamps=tuple(stream.gps),
        power_unit="dBFS",
        calibration=calibration,
        details=details,
    )
