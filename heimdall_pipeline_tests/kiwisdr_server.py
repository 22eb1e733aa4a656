"""A KiwiSDR test double: an aiohttp.web websocket server on 127.0.0.1 (random free port).

It follows the real server (jks-prv/Beagle_SDR_GPS ``rx/rx_server.cpp``, ``rx_cmd.cpp``,
``rx_sound.cpp``, ``rx_sound_cmd.cpp``) in what a client can observe:

- on connect, before ``SET auth``: ``too_busy=N`` (mode busy), ``redirect=<encoded url>`` (mode
  redirect), ``reason_disabled=<encoded text> down=N`` (mode down);
- after auth: ``rx_chans``, ``chan_no_pwd``, ``is_local``, ``max_camp``, ``badp=N`` (0 accepted,
  ``badp_code`` when refused), then one version line ending ``freq_offset=<kHz, 3 decimals>``,
  ``center_freq= bandwidth= adc_clk_nom=``, ``audio_init= audio_rate=`` and
  ``sample_rate=<6 decimals>``;
- no audio until frequency, mode, passband (``SET mod=``), AGC (``SET agc=``) and ``SET AR OK``
  have arrived; then SND IQ frames paced in real time (``realtime=False``: as fast as the loop
  allows, for protocol-only tests), ``samples_per_frame`` I,Q pairs, big-endian int16 unless
  ``little_endian``, a 10-byte GNSS header, sequence numbers counting up;
- ``RETUNE_DELAY_S`` after the first tune it sets the frequency again; before that the IQ carries
  the phase-rotation bug the real re-tune works around (here: rotated by 90 degrees);
- the S-meter of every frame is the server's estimator: a 10 ms exponential average of the
  instantaneous power in dB of the samples sent, plus ``smeter_offset_db`` (the dBm of full
  scale), truncated to 0.1 dB and clamped to -127..+3.4 dBm (``smeter_raw`` pins a value);
- ``DAT`` frames every ``dat_every`` IQ frames (spectrum data the client did not ask for).

The IQ is a known complex test tone (sample k of the stream, counted from the first IQ frame and
including deliberately skipped frames, is ``round(A cos(2 pi f k / fs)) + 1j round(A sin(...))``),
optionally with complex Gaussian noise (``noise_dbfs``) and second marks (``second_marks``: the
first 100 ms of every GNSS second at a quarter of the amplitude), or, with ``replay=<path>``, the
frames of a real kiwirecorder ``--kiwi-wav`` file with their GNSS headers.

GNSS time (``gnss_clock``): with "wall" (the default) the double is a live receiver. Each frame's
header carries the GPS time (seconds of the week, nanoseconds) of its first sample by the wall
clock, the frame is sent once its last sample has been taken, and, as the real server
(``rx_sound.cpp``: the first packet after the stream starts has no time yet), the first IQ frame
carries a zero header. A replay then plays the recording as if it were being received now: the
wall clock maps into the recording's GNSS time modulo its window (``replay_window_gps_ns``, whole
seconds long; by default the recording's own stamped span), the stream starts where "now" falls
in it, loops at its end, and every header is the recorded one moved by the same whole number of
windows (doubles replaying recordings of the same moment with the same window stay aligned, so
a TDoA across them holds). With "fixed" the headers count from ``gps_start_seconds`` (tone) or are
the recorded ones from the file's start (replay, bit for bit), for protocol-only tests.

Modes (``FakeKiwiConfig.mode``):
  normal, busy, bad_password (every connection gets ``badp=badp_code``; in normal mode the first
  ``refused_connections`` do), down, redirect (to ``redirect_to``), drop (connection aborted
  after ``drop_after_frames`` frames), garbage (an unknown-tag frame after
  ``garbage_after_frames`` frames), gap (``gap_frames`` frames never sent after
  ``gap_after_frames`` frames), compressed (IQ frames flagged 0x10), slow (never answers auth).
A ``password`` may be required in any mode (wrong password -> badp=1).

Usage, sync::

    with FakeKiwiSDR(mode="normal") as kiwi:
        capture = asyncio.run(capture_iq(kiwi.receiver(), ...))
        kiwi.commands  # texts the client sent

or async::

    async with FakeKiwiSDR() as kiwi: ...
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import struct
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from aiohttp import WSMsgType, web

from heimdall_pipeline.dsp.timing import (
    NS, SECONDS_PER_WEEK, fit_time_model, gps_ns_to_utc_ns, leap_seconds_at, resolve_gps_ns, utc_to_gps_ns,
)
from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.storage.kiwi_wav import read_kiwi_wav, samples_to_int16
from heimdall_pipeline_tests.loopback_server import serve_on_loopback
from heimdall_pipeline.validation import validate_receiver

RETUNE_DELAY_S = 1.5  # rx_sound.cpp: DOUBLE_SET_DELAY after the first frequency set
SMETER_TIME_CONSTANT_S = 0.01  # rx_sound.cpp: ATTACK_TIMECONST

MODES = ("normal", "busy", "bad_password", "down", "redirect", "drop", "garbage", "gap", "compressed", "slow")
GNSS_CLOCKS = ("wall", "fixed")
SECOND_MARK_S = 0.1  # second marks: the first 100 ms of every GNSS second
SECOND_MARK_LEVEL = 0.25  # ... at this fraction of the amplitude


@dataclasses.dataclass
class FakeKiwiConfig:
    mode: str = "normal"
    password: str | None = None  # None: open receiver
    sample_rate: float = 12001.135
    audio_rate: int = 12000
    bandwidth_hz: float = 30e6
    freq_offset_khz: float = 0.0
    version: tuple[int, int] = (1, 550)
    channels: int = 4
    samples_per_frame: int = 512
    tone_hz: float = 1000.0
    amplitude: int = 8000
    smeter_offset_db: float = -65.0  # S-meter dBm of a full-scale signal (the owner's calibration)
    smeter_raw: int | None = None  # pin the S-meter to this raw value (None: computed from the IQ)
    noise_dbfs: float | None = None  # complex Gaussian noise power added to the tone
    noise_seed: int = 1
    badp_code: int = 1
    refused_connections: int = 0  # in normal mode, the first N connections get badp=badp_code
    down_type: int = 0  # 0 disabled, 1 software update, 2 backup
    reason_disabled: str = "Antenna maintenance until Monday"
    dat_every: int = 0  # a DAT frame after every Nth IQ frame (0 = never)
    retune_rotation: bool = True  # IQ rotated by 90 degrees until the re-tune
    replay: str | Path | None = None  # a kiwirecorder --kiwi-wav file to stream instead of the tone
    # replay, "wall" clock: the GPS ns span [start, end) of the recording that loops (whole seconds
    # long); None = the recording's own stamped span. Doubles replaying one moment share it.
    replay_window_gps_ns: tuple[int, int] | None = None
    gnss_clock: str = "wall"  # "wall": a live receiver; "fixed": headers from gps_start_seconds / as recorded
    second_marks: bool = False  # tone: the first 100 ms of every GNSS second at a quarter amplitude
    little_endian: bool = False
    adc_overflow_every: int = 0  # flag every Nth frame with ADC overflow (0 = never)
    leading_audio_frames: int = 0  # mono non-IQ frames before the IQ stream (mode switch leftovers)
    gps_start_seconds: int = 345600
    gps_solution_age: int = 3  # last_gps_solution byte; 255 = no GPS clock
    start_sequence: int = 100
    frame_interval_s: float = 0.0  # pause between frames; 0 = as fast as the loop allows
    realtime: bool = True  # pace frames at samples_per_frame / sample_rate, like the server
    drop_after_frames: int = 4
    garbage_after_frames: int = 2
    gap_after_frames: int = 3
    gap_frames: int = 2
    redirect_to: str | None = None
    max_frames: int = 100_000

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.gnss_clock not in GNSS_CLOCKS:
            raise ValueError(f"gnss_clock {self.gnss_clock!r} is not one of {', '.join(GNSS_CLOCKS)}")


@dataclasses.dataclass(frozen=True)
class ReceivedCommand:
    connection: int
    time_s: float  # time.monotonic() on arrival
    text: str


def tone_iq(config: FakeKiwiConfig, start: int, count: int) -> np.ndarray:
    """int16 (count, 2) I,Q of the test tone for stream sample indices start..start+count-1."""
    k = np.arange(start, start + count, dtype=np.float64)
    phase = 2.0 * np.pi * config.tone_hz * k / config.sample_rate
    out = np.empty((count, 2), dtype=np.int16)
    out[:, 0] = np.round(config.amplitude * np.cos(phase)).astype(np.int16)
    out[:, 1] = np.round(config.amplitude * np.sin(phase)).astype(np.int16)
    return out


def encode_msg(text: str) -> bytes:
    return b"MSG " + text.encode("utf-8")


def smeter_values(iq: np.ndarray, sample_rate: float, offset_db: float, state_db: float) -> tuple[int, float]:
    """The raw S-meter the server sends after these int16 (n, 2) samples, and the new average state.

    The server averages the instantaneous power in dB sample by sample (it starts from 0 dB);
    written here as a plain loop, independently of the client's implementation."""
    alpha = 1.0 - math.exp(-1.0 / (sample_rate * SMETER_TIME_CONSTANT_S))
    power = (iq.astype(np.float64) ** 2).sum(axis=1) / 32768.0**2
    for p in power:
        state_db = (1.0 - alpha) * state_db + alpha * 10.0 * math.log10(max(p, 1e-20))
    dbm = min(max(state_db + offset_db, -127.0), 3.4)
    return int((dbm + 127.0) * 10), state_db


def encode_snd_iq(flags: int, sequence: int, smeter: int, iq: np.ndarray, *, last_gps_solution: int = 3,
                  gps_seconds: int = 0, gps_nanoseconds: int = 0) -> bytes:
    """An SND IQ frame as a KiwiSDR sends it. iq: int16 (n, 2)."""
    dtype = "<i2" if flags & 0x80 else ">i2"
    return (b"SND" + struct.pack("<BI", flags, sequence) + struct.pack(">H", smeter)
            + struct.pack("<BBII", last_gps_solution, 0, gps_seconds, gps_nanoseconds)
            + np.ascontiguousarray(iq, dtype=dtype).tobytes())


def encode_snd_audio(flags: int, sequence: int, smeter: int, n: int) -> bytes:
    return b"SND" + struct.pack("<BI", flags, sequence) + struct.pack(">H", smeter) + bytes(2 * n)


@dataclasses.dataclass(frozen=True)
class ReplayFrame:
    iq: np.ndarray  # int16 (n, 2)
    gps_header: tuple[int, int, int]  # fix age, GPS seconds, nanoseconds
    start_gps_ns: int | None = None  # the recording's time model at the frame's first sample (absolute GPS ns)
    header_gps_ns: int | None = None  # the header as absolute GPS ns (None: no GNSS time)


@dataclasses.dataclass(frozen=True)
class Replay:
    frames: list[ReplayFrame]
    sample_rate_hz: float | None  # the rate the recording's GNSS tags measure (None: untimed)

    def window_gps_ns(self) -> tuple[int, int]:
        """The stamped span: from the first stamped frame after the first to the end of the last."""
        timed = [f for f in self.frames[1:] if f.start_gps_ns is not None and f.header_gps_ns is not None]
        if not timed or self.sample_rate_hz is None:
            raise ValueError("the recording has no GNSS time to replay on the wall clock")
        last = timed[-1]
        return timed[0].start_gps_ns, last.start_gps_ns + round(len(last.iq) * NS / self.sample_rate_hz)


def replay_frames(path: str | Path, samples_per_frame: int) -> Replay:
    """A kiwirecorder file as the frames the server sent: one per ``kiwi`` header, each with the
    GNSS time of its first sample by the recording's time model (dsp/timing.py)."""
    recording = read_kiwi_wav(path)
    pairs = samples_to_int16(recording.samples)
    starts = [t.sample_index for t in recording.timestamps] or list(range(0, len(pairs), samples_per_frame))
    anchor = utc_to_gps_ns(recording.name.start_utc)
    try:
        model = fit_time_model(recording.timestamps, recording.header_rate_hz, recording.name.start_utc, len(pairs))
    except ValueError:
        model = None
    frames = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(pairs)
        t = recording.timestamps[i] if recording.timestamps else None
        header = (255, 0, 0) if t is None else (int(t.fix_age_s if t.fix_age_s is not None else 0),
                                                 t.gps_seconds, t.gps_nanoseconds)
        frames.append(ReplayFrame(
            iq=pairs[start:end], gps_header=header,
            start_gps_ns=None if model is None else anchor + round(model.gps_seconds_since(anchor, start) * NS),
            header_gps_ns=resolve_gps_ns(t.gps_seconds, t.gps_nanoseconds, anchor) if t and t.has_solution else None))
    return Replay(frames, None if model is None else model.sample_rate_hz)


def common_replay_window(paths: list[str | Path], samples_per_frame: int = 512) -> tuple[int, int]:
    """The GPS ns window that every recording covers, whole seconds long: doubles replaying
    recordings of one moment with this window play the same moment at the same wall time."""
    windows = [replay_frames(path, samples_per_frame).window_gps_ns() for path in paths]
    start, end = max(w[0] for w in windows), min(w[1] for w in windows)
    if end - start < NS:
        raise ValueError(f"the recordings overlap by {(end - start) / NS:.3f} s, less than a second")
    return start, start + (end - start) // NS * NS


def replay_start_at(window: tuple[int, int], not_before: datetime, duration_s: float,
                    margin_s: float = 0.25, slack_s: float = 0.0) -> datetime:
    """The first start instant at or after not_before whose capture of duration_s lies inside one
    loop of a replay window (a capture across the loop's end would join two stretches), with
    slack_s to spare should the capture start that much later."""
    start, end = window
    length = end - start
    at = utc_to_gps_ns(not_before)
    position = (at - start) % length
    margin_ns = round(margin_s * NS)
    if round((duration_s + slack_s + 2 * margin_s) * NS) > length:
        raise ValueError(f"{duration_s:g} s + {slack_s:g} s of slack do not fit in the {length / NS:g} s loop")
    if position < margin_ns or position + round((duration_s + slack_s) * NS) + margin_ns > length:
        at += (length - position) + margin_ns
    utc_ns = gps_ns_to_utc_ns(at, leap_seconds_at(not_before))
    return datetime.fromtimestamp(utc_ns // NS, tz=timezone.utc).replace(microsecond=utc_ns % NS // 1000)


def wall_gps_ns() -> int:
    """GPS time now by the wall clock, ns since the GPS epoch."""
    return utc_to_gps_ns(datetime.now(timezone.utc))


def gps_header(age: int, gps_ns: int) -> tuple[int, int, int]:
    seconds, nanoseconds = divmod(gps_ns, NS)
    return age, seconds % SECONDS_PER_WEEK, nanoseconds


class LoopThread:
    """An event loop in a daemon thread, for doubles used from synchronous code."""

    def __init__(self, name: str = "fake-kiwisdr"):
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(ready.set)
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name=name, daemon=True)
        self.thread.start()
        ready.wait(5)

    def run(self, coroutine, timeout_s: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class FakeKiwiSDR:
    def __init__(self, config: FakeKiwiConfig | None = None, **overrides: Any):
        if config is None:
            config = FakeKiwiConfig(**overrides)
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        self.config = config
        self.commands_received: list[ReceivedCommand] = []
        self.connections = 0
        self.frames_sent: dict[int, int] = {}
        self._sent_iq: dict[int, list[np.ndarray]] = {}
        self.smeter_sent: dict[int, list[int]] = {}
        self.tuned_khz: dict[int, list[float]] = {}
        self.retune_sample_index: dict[int, int] = {}
        self._replay = replay_frames(config.replay, config.samples_per_frame) if config.replay else None
        self._replay_window: tuple[int, int] | None = None
        # the rate the server reports: a live replay reports the recording's measured one
        self.sample_rate = config.sample_rate
        if self._replay is not None and config.gnss_clock == "wall":
            start, end = config.replay_window_gps_ns or self._replay.window_gps_ns()
            self._replay_window = (start, start + max(1, (end - start) // NS) * NS)
            self.sample_rate = round(float(self._replay.sample_rate_hz), 6)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._handlers: set[asyncio.Task] = set()
        self._open_ws: set[web.WebSocketResponse] = set()
        self._loop_thread: LoopThread | None = None
        self._tune_time: dict[int, float] = {}

    # ------------------------------------------------------------------ public helpers
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def commands(self) -> list[str]:
        return [c.text for c in list(self.commands_received)]

    def commands_of(self, connection: int) -> list[ReceivedCommand]:
        return [c for c in list(self.commands_received) if c.connection == connection]

    def receiver(self, rid: str = "fakekiwi", **fields: Any) -> Receiver:
        values: dict[str, Any] = dict(id=rid, name=f"Fake KiwiSDR {rid}", url=self.url, kind="kiwisdr",
                                      location_name="localhost", latitude=47.0, longitude=8.0)
        values.update(fields)
        return validate_receiver(Receiver(**values))

    def sent_iq(self, connection: int | None = None) -> np.ndarray:
        """complex64 (int16 units) of every IQ sample sent on a connection (default: the last)."""
        if connection is None:
            connection = self.connections
        chunks = self._sent_iq.get(connection, [])
        if not chunks:
            return np.zeros(0, np.complex64)
        ints = np.concatenate(chunks).astype(np.float32)
        return (ints[:, 0] + 1j * ints[:, 1]).astype(np.complex64)

    def expected_tone(self, count: int, start: int = 0) -> np.ndarray:
        """The test tone in the client's scale (int16 / 32768), complex64."""
        ints = tone_iq(self.config, start, count).astype(np.float32) / np.float32(32768.0)
        return (ints[:, 0] + 1j * ints[:, 1]).astype(np.complex64)

    # ------------------------------------------------------------------ async lifecycle
    async def start(self) -> "FakeKiwiSDR":
        app = web.Application()
        app.router.add_get("/{ts}/SND", self._handle_snd)
        app.router.add_get("/{ts}/W/F", self._handle_other)
        self._runner, self._port = await serve_on_loopback(app)
        return self

    async def stop(self) -> None:
        for ws in list(self._open_ws):
            try:
                await asyncio.wait_for(ws.close(code=1001, message=b"server shutdown"), 0.5)
            except Exception:  # noqa: BLE001
                pass
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=1.0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeKiwiSDR":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # ------------------------------------------------------------------ sync lifecycle (own thread)
    def __enter__(self) -> "FakeKiwiSDR":
        self._loop_thread = LoopThread()
        self._loop_thread.run(self.start())
        return self

    def __exit__(self, *exc: Any) -> None:
        loop_thread, self._loop_thread = self._loop_thread, None
        if loop_thread is not None:
            try:
                loop_thread.run(self.stop())
            finally:
                loop_thread.close()

    # ------------------------------------------------------------------ protocol
    async def _handle_other(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=404, text="only SND is faked")

    async def _handle_snd(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        ws = web.WebSocketResponse(compress=False, max_msg_size=0)
        await ws.prepare(request)
        self._open_ws.add(ws)
        self.connections += 1
        conn = self.connections
        events = {name: asyncio.Event() for name in ("auth", "ar_ok", "tune", "agc", "keepalive", "closed")}
        auth_password: list[str] = []
        self.tuned_khz[conn] = []
        reader = asyncio.create_task(self._read_commands(ws, conn, events, auth_password))
        try:
            await self._converse(request, ws, conn, events, auth_password)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass
        finally:
            reader.cancel()
            try:
                await reader
            except BaseException:  # noqa: BLE001
                pass
            if not ws.closed:
                try:
                    await asyncio.wait_for(ws.close(), 0.5)
                except Exception:  # noqa: BLE001
                    pass
            self._open_ws.discard(ws)
            self._handlers.discard(task)
        return ws

    async def _read_commands(self, ws: web.WebSocketResponse, conn: int, events: dict[str, asyncio.Event],
                             auth_password: list[str]) -> None:
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                text = msg.data
                self.commands_received.append(ReceivedCommand(conn, time.monotonic(), text))
                fields = dict(p.split("=", 1) for p in text.split(" ")[1:] if "=" in p)
                if text.startswith("SET auth "):
                    auth_password.append(fields.get("p", ""))
                    events["auth"].set()
                elif text.startswith("SET AR OK"):
                    events["ar_ok"].set()
                elif text.startswith("SET mod="):
                    # rx_sound_cmd.cpp: frequency, mode and a non-empty passband in one command
                    if {"mod", "low_cut", "high_cut", "freq"} <= fields.keys():
                        self.tuned_khz[conn].append(float(fields["freq"]))
                        if float(fields["low_cut"]) or float(fields["high_cut"]):
                            self._tune_time.setdefault(conn, time.monotonic())
                            events["tune"].set()
                elif text.startswith("SET agc="):
                    events["agc"].set()
                elif text == "SET keepalive":
                    events["keepalive"].set()
        finally:
            events["closed"].set()

    async def _wait(self, events: dict[str, asyncio.Event], *names: str) -> bool:
        """Wait until every named event is set; False if the client went away first."""
        for name in names:
            waiter = asyncio.ensure_future(events[name].wait())
            closer = asyncio.ensure_future(events["closed"].wait())
            done, pending = await asyncio.wait({waiter, closer}, return_when=asyncio.FIRST_COMPLETED)
            for p in pending:
                p.cancel()
            if not events[name].is_set():
                return False
        return True

    async def _converse(self, request: web.Request, ws: web.WebSocketResponse, conn: int,
                        events: dict[str, asyncio.Event], auth_password: list[str]) -> None:
        cfg = self.config
        # rx_server.cpp refuses these as the websocket opens, before any command
        if cfg.mode == "busy":
            await ws.send_bytes(encode_msg(f"too_busy={cfg.channels}"))
            return
        if cfg.mode == "down":
            reason = quote(cfg.reason_disabled, safe="") if cfg.down_type == 0 else "(null)"
            await ws.send_bytes(encode_msg(f"reason_disabled={reason} down={cfg.down_type}"))
            return
        if cfg.mode == "redirect":
            await ws.send_bytes(encode_msg(f"redirect={quote(cfg.redirect_to or '', safe='')}"))
            return
        if not await self._wait(events, "auth"):
            return
        if cfg.mode == "slow":
            await events["closed"].wait()
            return
        wrong = cfg.password is not None and auth_password[0] != cfg.password
        badp = 0
        if wrong:
            badp = 1
        elif cfg.mode == "bad_password" or conn <= cfg.refused_connections:
            badp = cfg.badp_code
        await ws.send_bytes(encode_msg(f"rx_chans={cfg.channels}"))
        await ws.send_bytes(encode_msg(f"chan_no_pwd={0 if cfg.password else cfg.channels}"))
        if badp == 0:
            await ws.send_bytes(encode_msg(f"is_local={conn % cfg.channels},0,0"))
        await ws.send_bytes(encode_msg("max_camp=4"))
        await ws.send_bytes(encode_msg(f"badp={badp}"))
        if badp:
            return
        await ws.send_bytes(encode_msg(
            f"version_maj={cfg.version[0]} version_min={cfg.version[1]} debian_ver=11 model=2 platform=0 "
            f"ext_clk=0 abyy=2024 freq_offset={cfg.freq_offset_khz:.3f}"))
        await ws.send_bytes(encode_msg(f"center_freq={int(cfg.bandwidth_hz / 2)} bandwidth={int(cfg.bandwidth_hz)} "
                                       f"adc_clk_nom=66666600"))
        await ws.send_bytes(encode_msg(f"audio_init=0 audio_rate={cfg.audio_rate}"))
        await ws.send_bytes(encode_msg(f"sample_rate={self.sample_rate:.6f}"))
        # rx_sound.cpp: no audio before frequency/mode/passband, AGC and AR OK (cmd_recv == CMD_ALL)
        if not await self._wait(events, "tune", "agc", "ar_ok"):
            return
        await self._stream(request, ws, conn, events)

    def _frame_iq(self, sample_index: int, count: int, rng: np.random.Generator, retune_at: int,
                  first_gps_ns: int) -> np.ndarray:
        cfg = self.config
        if cfg.second_marks:
            # the tone at a quarter amplitude in the first 100 ms of every GNSS second
            t_ns = first_gps_ns + np.round(np.arange(count) * NS / cfg.sample_rate).astype(np.int64)
            level = np.where(t_ns % NS < SECOND_MARK_S * NS, SECOND_MARK_LEVEL, 1.0)
            out = np.round(tone_iq(cfg, sample_index, count) * level[:, None]).astype(np.int16)
        elif cfg.noise_dbfs is None:
            out = tone_iq(cfg, sample_index, count)
        else:
            k = np.arange(sample_index, sample_index + count, dtype=np.float64)
            phase = 2.0 * np.pi * cfg.tone_hz * k / cfg.sample_rate
            sigma = 32768.0 * math.sqrt(10.0 ** (cfg.noise_dbfs / 10.0) / 2.0)
            x = np.stack([cfg.amplitude * np.cos(phase) + sigma * rng.standard_normal(count),
                          cfg.amplitude * np.sin(phase) + sigma * rng.standard_normal(count)], axis=1)
            out = np.clip(np.round(x), -32768, 32767).astype(np.int16)
        rotated = np.arange(sample_index, sample_index + count) < retune_at
        if cfg.retune_rotation and rotated.any():
            # the phase rotation the server's re-tune removes: 90 degrees, (I, Q) -> (-Q, I)
            out = out.copy()
            i = out[rotated, 0].copy()
            out[rotated, 0] = np.clip(-out[rotated, 1].astype(np.int32), -32768, 32767)
            out[rotated, 1] = i
        return out

    def _tone_frames(self, rng: np.random.Generator, retune_at: int, t0_gps_ns: int,
                     ) -> Iterator[tuple[np.ndarray, tuple[int, int, int], float]]:
        """(int16 IQ, GNSS header, when to send it in seconds after the stream started)."""
        cfg = self.config
        spf, sample_index = cfg.samples_per_frame, 0
        wall = cfg.gnss_clock == "wall"
        while True:
            first_ns = t0_gps_ns + round(sample_index * NS / cfg.sample_rate)
            iq = self._frame_iq(sample_index, spf, rng, retune_at, first_ns)
            if wall:  # rx_sound.cpp: the first packet after the stream starts has no GNSS time yet
                header = (0, 0, 0) if sample_index == 0 else gps_header(cfg.gps_solution_age, first_ns)
                due_s = (sample_index + spf) / cfg.sample_rate  # once its last sample is taken
            else:
                t = sample_index / cfg.sample_rate
                header = (cfg.gps_solution_age, cfg.gps_start_seconds + int(math.floor(t)),
                          int(round((t - math.floor(t)) * 1e9)) % 1_000_000_000)
                due_s = sample_index / cfg.sample_rate
            yield iq, header, due_s
            sample_index += spf

    def _replay_frames(self, t0_gps_ns: int) -> Iterator[tuple[np.ndarray, tuple[int, int, int], float]]:
        assert self._replay is not None
        frames = self._replay.frames
        if self._replay_window is None:  # "fixed": the file as recorded, from its start
            sample_index = 0
            for frame in frames:
                yield frame.iq, frame.gps_header, sample_index / self.sample_rate
                sample_index += len(frame.iq)
            return
        start, end = self._replay_window
        length = end - start
        window = [f for f in frames if f.start_gps_ns is not None and start <= f.start_gps_ns
                  and f.start_gps_ns + round(len(f.iq) * NS / self.sample_rate) <= end]
        if not window:
            raise ValueError(f"{self.config.replay}: no frame lies in the replay window")
        # the wall clock maps into the window: recording time = wall time - cycle * length
        cycle = (t0_gps_ns - start) // length
        position = t0_gps_ns - cycle * length
        first = next((i for i, f in enumerate(window) if f.start_gps_ns >= position), None)
        if first is None:
            cycle, first = cycle + 1, 0
        sent = 0
        while True:
            for frame in window[first:]:
                shift = cycle * length
                header = (gps_header(frame.gps_header[0], frame.header_gps_ns + shift)
                          if frame.header_gps_ns is not None else frame.gps_header)
                if sent == 0:
                    header = (0, 0, 0)  # the first packet has no GNSS time yet
                frame_end = frame.start_gps_ns + shift + round(len(frame.iq) * NS / self.sample_rate)
                yield frame.iq, header, (frame_end - t0_gps_ns) / NS
                sent += 1
            cycle, first = cycle + 1, 0

    async def _stream(self, request: web.Request, ws: web.WebSocketResponse, conn: int,
                      events: dict[str, asyncio.Event]) -> None:
        cfg = self.config
        spf = cfg.samples_per_frame
        seq = cfg.start_sequence
        self.frames_sent[conn] = 0
        self._sent_iq[conn] = []
        self.smeter_sent[conn] = []
        rng = np.random.default_rng([cfg.noise_seed, conn])
        smeter_state = 0.0  # rx_sound.cpp starts its average at 0 dB
        started = time.monotonic()
        t0_gps_ns = wall_gps_ns()  # the GNSS time of the stream's first sample ("wall" clock)
        # the re-tune, on the server's clock, expressed as a stream sample index
        retune_at = max(0, math.ceil((RETUNE_DELAY_S - (started - self._tune_time[conn])) * self.sample_rate))
        if self._replay is None:
            self.retune_sample_index[conn] = retune_at
            frames = self._tone_frames(rng, retune_at, t0_gps_ns)
        else:
            frames = self._replay_frames(t0_gps_ns)
        for _ in range(cfg.leading_audio_frames):
            await ws.send_bytes(encode_snd_audio(0x10, seq, 0, spf))
            seq += 1
        for frame_no, (iq, (gps_age, gps_s, gps_ns), due_s) in zip(range(cfg.max_frames), frames):
            if cfg.realtime:
                await asyncio.sleep(max(0.0, started + due_s - time.monotonic()))
            elif cfg.frame_interval_s > 0:
                await asyncio.sleep(cfg.frame_interval_s)
            else:
                await asyncio.sleep(0)
            if events["closed"].is_set() or ws.closed:
                return
            if cfg.mode == "drop" and frame_no == cfg.drop_after_frames:
                # let the client finish configuring so the drop happens mid-stream, deterministically
                try:
                    await asyncio.wait_for(self._wait(events, "keepalive"), 2.0)
                except asyncio.TimeoutError:
                    pass
                transport = request.transport
                if transport is not None:
                    transport.abort()
                else:
                    await ws.close(code=1011)
                return
            if cfg.mode == "garbage" and frame_no == cfg.garbage_after_frames:
                await ws.send_bytes(b"\xde\xad\xbe\xefnot a kiwi frame")
                await events["closed"].wait()
                return
            flags = 0x08
            if cfg.little_endian:
                flags |= 0x80
            if cfg.mode == "compressed":
                flags |= 0x10
            if cfg.adc_overflow_every and (frame_no + 1) % cfg.adc_overflow_every == 0:
                flags |= 0x02
            smeter, smeter_state = smeter_values(iq, self.sample_rate, cfg.smeter_offset_db, smeter_state)
            if cfg.smeter_raw is not None:
                smeter = cfg.smeter_raw
            skipped = cfg.mode == "gap" and cfg.gap_after_frames <= frame_no < cfg.gap_after_frames + cfg.gap_frames
            if not skipped:
                frame = encode_snd_iq(flags, seq & 0xFFFFFFFF, smeter, iq,
                                      last_gps_solution=gps_age, gps_seconds=gps_s, gps_nanoseconds=gps_ns)
                try:
                    await ws.send_bytes(frame)
                    if cfg.dat_every and (frame_no + 1) % cfg.dat_every == 0:
                        await ws.send_bytes(b"DAT" + bytes([0]) + bytes(range(256)) * 4)
                except Exception:  # noqa: BLE001 - client went away
                    return
                self._sent_iq[conn].append(iq)
                self.smeter_sent[conn].append(smeter)
                self.frames_sent[conn] += 1
            seq += 1
        await events["closed"].wait()


class FakeKiwiNetwork:
    """Many doubles served by one event loop thread (each is one listening socket, so hundreds
    are cheap), and their registration as receivers.

        with FakeKiwiNetwork() as network:
            network.add("kiwi1", latitude=47.0, longitude=8.0, second_marks=True)
            network.register(engine)  # kiwisdr receivers pointing at the doubles, active
            ...
        # on exit the doubles stop and the receivers registered by `register` are deactivated
    """

    def __init__(self) -> None:
        self.doubles: dict[str, FakeKiwiSDR] = {}
        self._receivers: dict[str, Receiver] = {}
        self._registered: list[tuple[Any, str]] = []
        self._loop_thread: LoopThread | None = None

    def __enter__(self) -> "FakeKiwiNetwork":
        self._loop_thread = LoopThread("fake-kiwisdr-network")
        return self

    def add(self, rid: str, config: FakeKiwiConfig | None = None, *, receiver_fields: dict[str, Any] | None = None,
            **overrides: Any) -> FakeKiwiSDR:
        """Starts a double; receiver_fields: the registered receiver's fields (position, timeout ...)."""
        if self._loop_thread is None:
            raise RuntimeError("enter the network first")
        double = FakeKiwiSDR(config, **overrides)
        self._loop_thread.run(double.start())
        self.doubles[rid] = double
        self._receivers[rid] = double.receiver(rid, **(receiver_fields or {}))
        return double

    def add_many(self, count: int, prefix: str = "kiwi", **overrides: Any) -> list[Receiver]:
        """`count` doubles `<prefix>1`.. at distinct places across central Europe (a 10 x n grid)."""
        added = []
        for i in range(count):
            rid = f"{prefix}{i + 1}"
            self.add(rid, receiver_fields={"latitude": 44.0 + 1.2 * (i % 10), "longitude": -2.0 + 1.1 * (i // 10 % 20)},
                     **overrides)
            added.append(self._receivers[rid])
        return added

    @property
    def receivers(self) -> list[Receiver]:
        return list(self._receivers.values())

    def register(self, engine) -> list[Receiver]:
        """Registers (or points again, and activates) a kiwisdr receiver per double."""
        from heimdall_pipeline.db.receivers_repo import DuplicateReceiverError, add_receiver, update_receiver

        for receiver in self.receivers:
            try:
                add_receiver(engine, receiver)
            except DuplicateReceiverError:
                fields = dataclasses.asdict(receiver)
                fields.pop("id")
                update_receiver(engine, receiver.id, **fields)
            self._registered.append((engine, receiver.id))
        return self.receivers

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._registered:  # keep later "all active receivers" sessions off dead URLs
                from heimdall_pipeline.db.receivers_repo import set_receiver_active

                for engine, rid in self._registered:
                    set_receiver_active(engine, rid, False)
        finally:
            loop_thread, self._loop_thread = self._loop_thread, None
            if loop_thread is not None:
                try:
                    for double in self.doubles.values():
                        loop_thread.run(double.stop())
                finally:
                    loop_thread.close()


# The live DCF77 sessions' length: offline, every 16 s stretch of the shared recordings' common
# 29.5 s lands 1.59-1.71 km from Mainflingen, while 12 s stretches starting 7-8 s in land 3.1 km off.
DCF77_DURATION_S = 16.0


def dcf77_network(network: FakeKiwiNetwork, prefix: str = "dcf77") -> list[Receiver]:
    """Adds three doubles replaying the shared DCF77 recordings live (one window, so they play the
    same moment), as receivers `<prefix>-hb9odp` ... at the stations' positions."""
    import json

    from heimdall_pipeline_tests.data import DCF77_DIR

    paths = sorted(DCF77_DIR.glob("*_iq.wav"))
    window = common_replay_window(paths)
    positions = json.loads((DCF77_DIR / "receivers.json").read_text())["receivers"]
    added = []
    for path in paths:
        station = path.name.split("_")[2]
        rid = f"{prefix}-{station.lower()}"
        network.add(rid, replay=path, replay_window_gps_ns=window, receiver_fields={
            "name": f"{station} (replayed DCF77 recording)", "latitude": positions[station]["latitude"],
            "longitude": positions[station]["longitude"]})
        added.append(network._receivers[rid])
    return added


def dcf77_session_error_km(engine, session_key: str, receivers: list[Receiver], at: datetime) -> float:
    """Checks what a live DCF77 session must end with, whoever launched it: every capture stored,
    first samples within 50 ms of each other and not before `at`, a TDoA position from the three
    receivers; returns its distance from Mainflingen in km."""
    import json

    from heimdall_pipeline.db.captures_repo import capture_timing, outcomes_for_session
    from heimdall_pipeline.db.measurements_repo import get_localization
    from heimdall_pipeline.propagation import haversine_km
    from heimdall_pipeline_tests.data import DCF77_DIR

    outcomes = outcomes_for_session(engine, session_key)
    assert sorted(outcomes) == sorted(r.id for r in receivers), outcomes
    assert all(o.status == "stored" for o in outcomes.values()), outcomes
    assert capture_timing(outcomes.values())["first_sample_spread_ms"] <= 50.0
    assert min(o.start_time for o in outcomes.values()) >= at
    located = get_localization(engine, session_key, "tdoa")
    assert located is not None and located.localizable, located
    assert sorted(located.receivers_used) == sorted(r.id for r in receivers)
    truth = json.loads((DCF77_DIR / "receivers.json").read_text())["transmitter"]
    return float(haversine_km(located.latitude, located.longitude, truth["latitude"], truth["longitude"]))
