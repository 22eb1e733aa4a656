"""OpenWebRX audio client (aiohttp). Pure: no Dagster, no storage, no receiver registry.

What an OpenWebRX receiver gives (luarvique/openwebrx 1.2.x, OpenWebRX+: ``owrx/connection.py``,
``owrx/dsp.py``, ``owrx/client.py``, ``htdocs/openwebrx.js``, ``htdocs/lib/AudioEngine.js``):

- WebSocket ``/ws/`` below the receiver's page. The client sends the text
  ``SERVER DE CLIENT client=<name> type=receiver``; the server answers
  ``CLIENT DE SERVER server=openwebrx version=<v>``, then JSON messages ``{"type": ..., "value": ...}``.
- Client JSON: ``connectionproperties`` (``output_rate``, ``hd_output_rate``), ``dspcontrol`` with
  ``params`` (``offset_freq`` relative to the profile's ``center_freq``, ``mod``, ``low_cut``,
  ``high_cut``, ``squelch_level``) and with ``"action": "start"`` (no audio before it),
  ``selectprofile`` (``"<sdr_id>|<profile_id>"``).
- Server JSON: ``config`` (in parts: ``center_freq``, ``samp_rate``, ``sdr_id``, ``profile_id``,
  ``audio_compression``, ...), ``profiles`` (ids and names, which ``status.json`` lacks),
  ``smeter`` (the linear mean |x|^2 of the channel after its bandpass, about 4 a second; the
  browser shows 10·log10 of it: dB relative to the SDR's full scale, not calibrated),
  ``backoff`` (``reason`` "Too many clients" or "Client address banned"; the socket then closes),
  ``sdr_error`` (e.g. "No SDR Devices available"), ``demodulator_error``.
- Binary frames typed by their first byte: 0x01 FFT, 0x02 audio (mono, ``output_rate``), 0x03
  secondary FFT, 0x04 HD audio. Audio is int16 LE, or IMA ADPCM with sync blocks
  (``dsp/adpcm.py``) when ``audio_compression`` is ``adpcm``. No IQ, no timestamps.
- ``GET /status.json``: ``receiver`` (``name``, ``gps`` {lat, lon}, ``asl``, ``location``),
  ``version``, ``max_clients``, ``sdrs`` [{``name``, ``profiles`` [{``name``, ``center_freq``,
  ``sample_rate``}]}]. A websocket profile is named ``"<sdr name> <profile name>"``.

Politeness (OpenWebRX+ bans an address for 12 hours when its robot score reaches 30: each
websocket opened from the address adds ``max(0, 10 - seconds since each other open connection
from it started)``; each ``selectprofile`` adds ``10 - seconds since the previous change or the
connection``, and a gap over 10 s resets the score):

- one connection per capture, and per host one at a time and at least ``MIN_RECONNECT_GAP_S``
  (10 s) after the previous connection started, across processes (``HostGate``, a lock file and
  time stamp per host), so the connection term is always 0;
- at most one ``selectprofile`` per connection, only when the current profile does not cover the
  frequency (score at most 10);
- ``backoff`` "Too many clients" is transient: the next try waits ``BUSY_RETRY_AFTER_S`` (16 s,
  the browser's reconnect delay after a backoff); a banned address is not retried.

The capture: USB (``mode``) with the dial ``audio_centre_hz`` (1450 Hz, the middle of the
default 150-2750 Hz passband) below the requested frequency, so the requested frequency sounds at
1450 Hz and RF = dial + audio frequency. The first ``settle_s`` of audio (AGC attack, filters)
are skipped. The SSB chain has AGC: audio levels are relative; the S-meter is the level figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import logging
import math
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

import aiohttp
import numpy as np

from heimdall_pipeline.dsp.adpcm import SyncDecoder

log = logging.getLogger(__name__)

CLIENT_NAME = "heimdall"
DEFAULT_OUTPUT_RATE = 12000
DEFAULT_HD_OUTPUT_RATE = 48000
DEFAULT_MODE = "usb"
DEFAULT_PASSBAND_HZ = (150.0, 2750.0)  # OpenWebRX's USB bandpass
DEFAULT_SETTLE_S = 0.5
SQUELCH_OFF = -150
MIN_RECONNECT_GAP_S = 10.0
BUSY_RETRY_AFTER_S = 16.0
PROFILE_EDGE_MARGIN = 0.9  # the passband must lie within 90 % of the profile's half bandwidth
AUDIO_FRAME, HD_AUDIO_FRAME = 0x02, 0x04
INT16_FULL_SCALE = 32768.0


# --------------------------------------------------------------------------------------- errors


class OpenWebRXError(Exception):
    """A capture failed. transient: worth trying again later; retry_after_s: not before then."""

    transient = False
    retry_after_s = 0.0


class ReceiverBusyError(OpenWebRXError):
    """``backoff`` "Too many clients" (or another reason the server gives for now)."""

    transient = True
    retry_after_s = BUSY_RETRY_AFTER_S


class AddressBannedError(OpenWebRXError):
    """``backoff`` "Client address banned": not retried (the ban lasts hours)."""


class SdrUnavailableError(OpenWebRXError):
    """``sdr_error``: the receiver has no SDR to give now (failed, disabled, busy with another profile)."""

    transient = True
    retry_after_s = MIN_RECONNECT_GAP_S


class DemodulatorError(OpenWebRXError):
    """``demodulator_error``: the receiver cannot demodulate as asked."""


class FrequencyNotCoveredError(OpenWebRXError):
    """No profile of the receiver covers the frequency with the passband."""


class ConnectionFailedError(OpenWebRXError):
    """The websocket could not be opened or broke off."""

    transient = True
    retry_after_s = MIN_RECONNECT_GAP_S


class StreamTimeoutError(ConnectionFailedError):
    """Nothing arrived for too long."""


class ProtocolError(OpenWebRXError):
    """The server does not speak OpenWebRX as this client knows it."""


# ------------------------------------------------------------------------------- status.json


@dataclasses.dataclass(frozen=True)
class Profile:
    sdr_name: str
    name: str
    center_freq_hz: float
    sample_rate_hz: float

    @property
    def websocket_name(self) -> str:
        return f"{self.sdr_name} {self.name}"

    def covers(self, low_hz: float, high_hz: float) -> bool:
        half = self.sample_rate_hz / 2.0 * PROFILE_EDGE_MARGIN
        return self.center_freq_hz - half <= low_hz and high_hz <= self.center_freq_hz + half


@dataclasses.dataclass(frozen=True)
class ReceiverStatus:
    """What ``GET /status.json`` says about a receiver."""

    name: str | None
    latitude: float | None
    longitude: float | None
    altitude_m: float | None
    location: str | None
    version: str | None
    max_clients: int | None
    profiles: tuple[Profile, ...]

    @property
    def min_frequency_hz(self) -> float | None:
        return min((p.center_freq_hz - p.sample_rate_hz / 2 for p in self.profiles), default=None)

    @property
    def max_frequency_hz(self) -> float | None:
        return max((p.center_freq_hz + p.sample_rate_hz / 2 for p in self.profiles), default=None)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def parse_status(document: Any) -> ReceiverStatus:
    """A ``status.json`` document -> ReceiverStatus (ProtocolError when it is not one)."""
    if not isinstance(document, dict) or not isinstance(document.get("receiver"), dict):
        raise ProtocolError("status.json has no 'receiver' object: not an OpenWebRX receiver")
    receiver = document["receiver"]
    gps = receiver.get("gps") if isinstance(receiver.get("gps"), dict) else {}
    profiles = []
    for sdr in document.get("sdrs") or []:
        for profile in (sdr or {}).get("profiles") or []:
            center, rate = _number(profile.get("center_freq")), _number(profile.get("sample_rate"))
            if center is not None and rate:
                profiles.append(Profile(str(sdr.get("name", "")), str(profile.get("name", "")), center, rate))
    max_clients = _number(document.get("max_clients"))
    return ReceiverStatus(
        name=str(receiver["name"]).strip() or None if receiver.get("name") is not None else None,
        latitude=_number(gps.get("lat")), longitude=_number(gps.get("lon")), altitude_m=_number(receiver.get("asl")),
        location=str(receiver["location"]).strip() or None if receiver.get("location") is not None else None,
        version=None if document.get("version") is None else str(document["version"]),
        max_clients=None if max_clients is None else int(max_clients), profiles=tuple(profiles))


def page_url(receiver_url: str) -> str:
    """The receiver's page, ending in '/' (``http://h:8073`` -> ``http://h:8073/``)."""
    parsed = urlparse(receiver_url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"{receiver_url!r} is not an http(s) OpenWebRX url")
    return receiver_url if receiver_url.endswith("/") else receiver_url + "/"


def websocket_url(receiver_url: str) -> str:
    base = page_url(receiver_url)
    return urljoin(base, "ws/").replace("http", "ws", 1)


async def fetch_status(receiver_url: str, *, session: aiohttp.ClientSession | None = None,
                       timeout_s: float = 10.0) -> ReceiverStatus:
    url = urljoin(page_url(receiver_url), "status.json")
    own = session is None
    session = session or aiohttp.ClientSession()
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
            if response.status != 200:
                raise ProtocolError(f"{url} answered HTTP {response.status}")
            try:
                document = await response.json(content_type=None)
            except (ValueError, aiohttp.ContentTypeError) as exc:
                raise ProtocolError(f"{url} is not JSON") from exc
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
        raise ConnectionFailedError(f"cannot read {url}: {exc or type(exc).__name__}") from exc
    finally:
        if own:
            await session.close()
    return parse_status(document)


# ---------------------------------------------------------------------------- politeness gate

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]


class HostGate:
    """One connection per host at a time, each at least ``min_gap_s`` after the previous one
    started and not before a server's backoff allows; shared by every process that uses the same
    directory (an flock'ed file per host holding the earliest time of the next connection)."""

    def __init__(self, directory: str | Path, *, min_gap_s: float = MIN_RECONNECT_GAP_S,
                 clock: Clock = time.time, sleep: Sleep = asyncio.sleep, poll_s: float = 0.2):
        self.directory = Path(directory)
        self.min_gap_s = float(min_gap_s)
        self.clock = clock
        self.sleep = sleep
        self.poll_s = poll_s
        self.connections: list[tuple[str, float]] = []  # (host, start) of each connection let through

    def _path(self, host: str) -> Path:
        return self.directory / (re.sub(r"[^A-Za-z0-9.-]", "_", host) + ".gate")

    @contextlib.asynccontextmanager
    async def connection(self, host: str) -> AsyncIterator["GateTicket"]:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path(host), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(self.poll_s)  # another process holds this host: real time
            not_before = _read_time(fd)
            while (wait := not_before - self.clock()) > 0:
                await self.sleep(wait)
            started = self.clock()
            self.connections.append((host, started))
            ticket = GateTicket(not_before=started + self.min_gap_s)
            try:
                yield ticket
            finally:
                backoff_until = self.clock() + ticket.extra_wait_s if ticket.extra_wait_s else 0.0
                _write_time(fd, max(ticket.not_before, backoff_until))
        finally:
            os.close(fd)  # closing releases the lock


@dataclasses.dataclass
class GateTicket:
    not_before: float
    extra_wait_s: float = 0.0  # a backoff: the next connection waits this long after this one ends


def _read_time(fd: int) -> float:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 64).decode("ascii", "replace").strip()
    try:
        return float(text)
    except ValueError:
        return 0.0


def _write_time(fd: int, value: float) -> None:
    os.lseek(fd, 0, os.SEEK_SET)
    os.ftruncate(fd, 0)
    os.write(fd, f"{value:.6f}\n".encode("ascii"))


# ----------------------------------------------------------------------------------- capture


@dataclasses.dataclass(frozen=True)
class AudioRecording:
    """Demodulated audio from one OpenWebRX receiver.

    samples: float32, int16 / 32768 (full scale 1.0, after the receiver's AGC).
    smeter: (audio sample index when it arrived, linear channel power) for every S-meter reading
    during the kept audio.
    """

    samples: np.ndarray
    sample_rate_hz: float
    dial_frequency_hz: float
    requested_frequency_hz: float
    mode: str
    passband_hz: tuple[float, float]
    smeter: tuple[tuple[int, float], ...]
    server_version: str | None
    profile_id: str | None
    profile_center_hz: float
    profile_sample_rate_hz: float
    audio_compression: str
    profile_changes: int
    details: dict[str, Any]


class _Conversation:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, *, requested_hz: float, duration_s: float,
                 output_rate: int, mode: str, passband_hz: tuple[float, float], audio_centre_hz: float,
                 settle_s: float, frame_timeout_s: float, status: Callable[[], Awaitable[ReceiverStatus]]):
        self.ws = ws
        self.requested_hz = requested_hz
        self.output_rate = output_rate
        self.mode = mode
        self.passband_hz = passband_hz
        self.dial_hz = requested_hz - audio_centre_hz
        self.frame_timeout_s = frame_timeout_s
        self.status = status
        self.settle_samples = int(round(settle_s * output_rate))
        self.wanted = int(round(duration_s * output_rate))
        self.config: dict[str, Any] = {}
        self.profiles: dict[str, str] | None = None
        self.version: str | None = None
        self.decoder = SyncDecoder()
        self.chunks: list[np.ndarray] = []
        self.received = 0  # audio samples decoded, settle included
        self.smeter: list[tuple[int, float]] = []
        self.profile_changes = 0
        self.frames = {"audio": 0, "hd_audio": 0, "fft": 0, "other": 0}
        self.messages: dict[str, int] = {}
        self.started = False

    @property
    def kept(self) -> int:
        return max(0, self.received - self.settle_samples)

    async def send(self, message: dict[str, Any]) -> None:
        try:
            await self.ws.send_str(json.dumps(message))
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            raise ConnectionFailedError(f"sending {message['type']} failed ({exc})") from exc

    async def receive(self) -> aiohttp.WSMessage:
        try:
            msg = await asyncio.wait_for(self.ws.receive(), timeout=self.frame_timeout_s)
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise StreamTimeoutError(f"nothing from the receiver for {self.frame_timeout_s:g} s "
                                     f"({self.kept} of {self.wanted} audio samples)") from exc
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            raise ConnectionFailedError(f"the receiver closed the connection ({self.kept} of {self.wanted} "
                                        "audio samples)")
        if msg.type == aiohttp.WSMsgType.ERROR:
            raise ConnectionFailedError(f"the connection failed ({self.ws.exception()})")
        return msg

    async def handshake(self) -> None:
        await self.ws.send_str(f"SERVER DE CLIENT client={CLIENT_NAME} type=receiver")
        await self.send({"type": "connectionproperties",
                         "params": {"output_rate": self.output_rate, "hd_output_rate": DEFAULT_HD_OUTPUT_RATE}})
        msg = await self.receive()
        if msg.type != aiohttp.WSMsgType.TEXT or not msg.data.startswith("CLIENT DE SERVER"):
            raise ProtocolError(f"no OpenWebRX handshake answer (got {str(msg.data)[:60]!r})")
        fields = dict(part.split("=", 1) for part in msg.data[17:].split() if "=" in part)
        if fields.get("server") != "openwebrx":
            raise ProtocolError(f"the server says it is {fields.get('server')!r}, not openwebrx")
        self.version = fields.get("version")

    def handle_json(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError as exc:
            raise ProtocolError(f"a text message is not JSON: {text[:60]!r}") from exc
        if not isinstance(message, dict):
            raise ProtocolError(f"a JSON message is not an object: {text[:60]!r}")
        kind = message.get("type")
        self.messages[str(kind)] = self.messages.get(str(kind), 0) + 1
        value = message.get("value")
        if kind == "config" and isinstance(value, dict):
            self.config.update(value)
        elif kind == "profiles" and isinstance(value, list):
            self.profiles = {str(p["id"]): str(p.get("name", "")) for p in value if isinstance(p, dict) and "id" in p}
        elif kind == "smeter":
            level = _number(value)
            if self.started and level is not None and level >= 0 and self.received >= self.settle_samples:
                self.smeter.append((self.kept, level))
        elif kind == "backoff":
            reason = str(message.get("reason", ""))
            if "banned" in reason.lower():
                raise AddressBannedError(f"the receiver refuses this address: {reason!r}")
            raise ReceiverBusyError(f"the receiver asks to back off: {reason!r}")
        elif kind == "sdr_error":
            raise SdrUnavailableError(f"the receiver reports an SDR error: {value!r}")
        elif kind == "demodulator_error":
            raise DemodulatorError(f"the receiver cannot demodulate {self.mode}: {value!r}")

    def handle_binary(self, data: bytes) -> None:
        if not data:
            return
        kind, payload = data[0], bytes(data[1:])
        if kind == AUDIO_FRAME:
            self.frames["audio"] += 1
            if not self.started:
                return  # audio of a demodulator we did not configure
            if self.config.get("audio_compression") == "adpcm":
                samples = self.decoder.decode(payload)
            else:
                if len(payload) % 2:
                    raise ProtocolError(f"an int16 audio frame has an odd length ({len(payload)} bytes)")
                samples = np.frombuffer(payload, dtype="<i2")
            skip = max(0, self.settle_samples - self.received)
            self.received += len(samples)
            keep = samples[skip:][: max(0, self.wanted - sum(len(c) for c in self.chunks))]
            if len(keep):
                self.chunks.append(keep.copy())
        elif kind == HD_AUDIO_FRAME:
            self.frames["hd_audio"] += 1
        elif kind in (0x01, 0x03):
            self.frames["fft"] += 1
        else:
            self.frames["other"] += 1

    async def pump_until(self, ready: Callable[[], bool]) -> None:
        while not ready():
            msg = await self.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.handle_json(msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                self.handle_binary(msg.data)

    def current_profile(self) -> tuple[float, float] | None:
        centre, rate = _number(self.config.get("center_freq")), _number(self.config.get("samp_rate"))
        return None if centre is None or not rate else (centre, rate)

    def covered_by(self, centre: float, rate: float) -> bool:
        low, high = self.dial_hz + self.passband_hz[0], self.dial_hz + self.passband_hz[1]
        return Profile("", "", centre, rate).covers(low, high)

    async def choose_profile(self) -> None:
        await self.pump_until(lambda: self.current_profile() is not None and self.profiles is not None)
        if self.covered_by(*self.current_profile()):
            return
        status = await self.status()
        low, high = self.dial_hz + self.passband_hz[0], self.dial_hz + self.passband_hz[1]
        names = {name: pid for pid, name in (self.profiles or {}).items()}
        for profile in status.profiles:
            if profile.covers(low, high) and profile.websocket_name in names:
                target = profile
                break
        else:
            ranges = ", ".join(f"{p.websocket_name} {(p.center_freq_hz - p.sample_rate_hz / 2) / 1e6:g}-"
                               f"{(p.center_freq_hz + p.sample_rate_hz / 2) / 1e6:g} MHz" for p in status.profiles)
            raise FrequencyNotCoveredError(f"no profile covers {low / 1e6:.6f}-{high / 1e6:.6f} MHz "
                                           f"(profiles: {ranges or 'none'})")
        self.config.pop("center_freq", None)
        await self.send({"type": "selectprofile", "params": {"profile": names[target.websocket_name]}})
        self.profile_changes += 1
        await self.pump_until(lambda: (self.current_profile() or (None,))[0] == target.center_freq_hz)

    async def record(self) -> None:
        await self.choose_profile()
        centre, _ = self.current_profile()
        low, high = self.passband_hz
        await self.send({"type": "dspcontrol", "params": {
            "offset_freq": int(round(self.dial_hz - centre)), "mod": self.mode, "low_cut": low, "high_cut": high,
            "squelch_level": SQUELCH_OFF}})
        await self.send({"type": "dspcontrol", "action": "start"})
        self.started = True
        await self.pump_until(lambda: sum(len(c) for c in self.chunks) >= self.wanted)


async def capture_audio(
    receiver_url: str,
    *,
    frequency_hz: float,
    duration_s: float,
    gate: HostGate,
    output_rate: int = DEFAULT_OUTPUT_RATE,
    mode: str = DEFAULT_MODE,
    passband_hz: tuple[float, float] = DEFAULT_PASSBAND_HZ,
    settle_s: float = DEFAULT_SETTLE_S,
    connect_timeout_s: float = 10.0,
    frame_timeout_s: float = 10.0,
    session: aiohttp.ClientSession | None = None,
) -> AudioRecording:
    """Records ``duration_s`` of ``mode`` audio with the requested frequency at the middle of the
    passband; one websocket, through ``gate``. Raises an OpenWebRXError subclass on failure."""
    if not (duration_s > 0 and math.isfinite(duration_s)):
        raise ValueError(f"duration_s must be positive, got {duration_s!r}")
    low, high = passband_hz
    if not 0 <= low < high:
        raise ValueError(f"passband_hz {passband_hz!r} must have 0 <= low < high (upper sideband)")
    url = websocket_url(receiver_url)
    host = urlparse(url).netloc
    own = session is None
    session = session or aiohttp.ClientSession()
    status_cache: list[ReceiverStatus] = []

    async def status() -> ReceiverStatus:
        if not status_cache:
            status_cache.append(await fetch_status(receiver_url, session=session))
        return status_cache[0]

    try:
        async with gate.connection(host) as ticket:
            try:
                ws = await asyncio.wait_for(session.ws_connect(url, autoping=True, heartbeat=None, max_msg_size=0),
                                            timeout=connect_timeout_s)
            except (asyncio.TimeoutError, TimeoutError) as exc:
                raise ConnectionFailedError(f"no connection to {url} within {connect_timeout_s:g} s") from exc
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status >= 500 or exc.status == 429:
                    raise ConnectionFailedError(f"{url} answered HTTP {exc.status}") from exc
                raise ProtocolError(f"{url} is not an OpenWebRX websocket (HTTP {exc.status})") from exc
            except (aiohttp.ClientError, OSError) as exc:
                raise ConnectionFailedError(f"cannot connect to {url}: {exc}") from exc
            talk = _Conversation(ws, requested_hz=float(frequency_hz), duration_s=float(duration_s),
                                 output_rate=int(output_rate), mode=mode, passband_hz=(float(low), float(high)),
                                 audio_centre_hz=(low + high) / 2.0, settle_s=settle_s,
                                 frame_timeout_s=frame_timeout_s, status=status)
            try:
                await talk.handshake()
                await talk.record()
            except OpenWebRXError as exc:
                ticket.extra_wait_s = exc.retry_after_s if isinstance(exc, (ReceiverBusyError, SdrUnavailableError)) else 0.0
                raise
            finally:
                with contextlib.suppress(Exception):
                    await ws.close()
    finally:
        if own:
            await session.close()

    samples = (np.concatenate(talk.chunks).astype(np.float32) / np.float32(INT16_FULL_SCALE)
               if talk.chunks else np.zeros(0, np.float32))
    centre, rate = talk.current_profile()
    details = {
        "protocol": "openwebrx-audio",
        "websocket_url": url,
        "frames": talk.frames,
        "messages": talk.messages,
        "settle_s": settle_s,
        "settle_samples": talk.settle_samples,
        "adpcm": ({"syncs": talk.decoder.syncs, "skipped_bytes": talk.decoder.skipped_bytes}
                  if talk.config.get("audio_compression") == "adpcm" else None),
    }
    return AudioRecording(
        samples=samples, sample_rate_hz=float(output_rate), dial_frequency_hz=talk.dial_hz,
        requested_frequency_hz=float(frequency_hz), mode=mode, passband_hz=(float(low), float(high)),
        smeter=tuple(talk.smeter), server_version=talk.version,
        profile_id=(f"{talk.config.get('sdr_id')}|{talk.config.get('profile_id')}"
                    if talk.config.get("profile_id") is not None else None),
        profile_center_hz=centre, profile_sample_rate_hz=rate,
        audio_compression=str(talk.config.get("audio_compression") or "none"),
        profile_changes=talk.profile_changes, details=details)
