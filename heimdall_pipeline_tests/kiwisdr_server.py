"""A fake KiwiSDR for tests: an aiohttp.web websocket server on 127.0.0.1 (random free port).

It speaks the KiwiSDR SND wire protocol (see heimdall_pipeline/sources/kiwisdr.py): waits for
``SET auth``, answers with MSG frames (``badp=0``, ``version_maj/min``, ``bandwidth``,
``audio_rate``, ``sample_rate``), waits for the client's ``SET AR OK`` and ``SET mod=iq`` and then
streams SND IQ frames (``samples_per_frame`` I,Q pairs, big-endian int16 unless
``little_endian``, 10-byte GPS header, incrementing sequence numbers) carrying a known complex
test tone: sample k (counted from the start of the stream, including samples of frames that are
deliberately skipped) is ``round(A*cos(2*pi*f*k/fs)) + 1j*round(A*sin(2*pi*f*k/fs))``.

Modes (``FakeKiwiConfig.mode``):
  normal, busy (too_busy), bad_password (badp=1), down, redirect (to ``redirect_to``),
  drop (connection aborted after ``drop_after_frames`` frames), garbage (an unknown-tag frame
  after ``garbage_after_frames`` frames), gap (``gap_frames`` sequence numbers skipped after
  ``gap_after_frames`` frames), compressed (IQ frames flagged 0x10), slow (never sends anything
  after auth, so the client times out).
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
import socket
import struct
import threading
import time
from typing import Any
from urllib.parse import quote

import numpy as np
from aiohttp import WSMsgType, web

from heimdall_pipeline.receivers import Receiver

MODES = ("normal", "busy", "bad_password", "down", "redirect", "drop", "garbage", "gap", "compressed", "slow")


@dataclasses.dataclass
class FakeKiwiConfig:
    mode: str = "normal"
    password: str | None = None  # None: open receiver
    sample_rate: float = 12001.135
    audio_rate: int = 12000
    bandwidth_hz: float = 30e6
    freq_offset_khz: float | None = None
    version: tuple[int, int] = (1, 550)
    channels: int = 4
    samples_per_frame: int = 512
    tone_hz: float = 1000.0
    amplitude: int = 8000
    smeter_raw: int = 500  # RSSI = 0.1*500 - 127 = -77 dBm
    little_endian: bool = False
    adc_overflow_every: int = 0  # flag every Nth frame with ADC overflow (0 = never)
    leading_audio_frames: int = 0  # mono non-IQ frames before the IQ stream (mode switch leftovers)
    gps_start_seconds: int = 345600
    gps_solution_age: int = 3  # last_gps_solution byte; 255 = no GPS clock
    start_sequence: int = 100
    frame_interval_s: float = 0.0  # pause between frames; 0 = as fast as the loop allows
    realtime: bool = False  # pace frames at samples_per_frame / sample_rate
    drop_after_frames: int = 4
    garbage_after_frames: int = 2
    gap_after_frames: int = 3
    gap_frames: int = 2
    redirect_to: str | None = None
    max_frames: int = 100_000

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")


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


def encode_snd_iq(flags: int, sequence: int, smeter: int, iq: np.ndarray, *, last_gps_solution: int = 3,
                  gps_seconds: int = 0, gps_nanoseconds: int = 0) -> bytes:
    """An SND IQ frame as a KiwiSDR sends it. iq: int16 (n, 2)."""
    dtype = "<i2" if flags & 0x80 else ">i2"
    return (b"SND" + struct.pack("<BI", flags, sequence) + struct.pack(">H", smeter)
            + struct.pack("<BBII", last_gps_solution, 0, gps_seconds, gps_nanoseconds)
            + np.ascontiguousarray(iq, dtype=dtype).tobytes())


def encode_snd_audio(flags: int, sequence: int, smeter: int, n: int) -> bytes:
    return b"SND" + struct.pack("<BI", flags, sequence) + struct.pack(">H", smeter) + bytes(2 * n)


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
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._handlers: set[asyncio.Task] = set()
        self._open_ws: set[web.WebSocketResponse] = set()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

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
        return Receiver(**values).validated()

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
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()
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
        loop = asyncio.new_event_loop()
        self._loop = loop
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-kiwisdr", daemon=True)
        self._thread.start()
        ready.wait(5)
        asyncio.run_coroutine_threadsafe(self.start(), loop).result(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(5)
            loop.close()
            self._loop = None
            self._thread = None

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
        events = {name: asyncio.Event() for name in ("auth", "ar_ok", "mod", "keepalive", "closed")}
        auth_password: list[str] = []
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
                if text.startswith("SET auth "):
                    fields = dict(p.split("=", 1) for p in text[len("SET auth "):].split(" ") if "=" in p)
                    auth_password.append(fields.get("p", ""))
                    events["auth"].set()
                elif text.startswith("SET AR OK"):
                    events["ar_ok"].set()
                elif text.startswith("SET mod="):
                    events["mod"].set()
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
        if not await self._wait(events, "auth"):
            return
        if cfg.mode == "slow":
            await events["closed"].wait()
            return
        if cfg.mode == "busy":
            await ws.send_bytes(encode_msg(f"too_busy={cfg.channels}"))
            return
        if cfg.mode == "down":
            await ws.send_bytes(encode_msg("down"))
            return
        if cfg.mode == "redirect":
            await ws.send_bytes(encode_msg(f"redirect={quote(cfg.redirect_to or '', safe='')}"))
            return
        wrong = cfg.password is not None and auth_password[0] != cfg.password
        if cfg.mode == "bad_password" or wrong:
            await ws.send_bytes(encode_msg("badp=1"))
            return
        await ws.send_bytes(encode_msg("badp=0"))
        await ws.send_bytes(encode_msg(f"version_maj={cfg.version[0]} version_min={cfg.version[1]}"))
        await ws.send_bytes(encode_msg(f"center_freq={int(cfg.bandwidth_hz / 2)} bandwidth={int(cfg.bandwidth_hz)} "
                                       f"adc_clk_nom=66666600"))
        if cfg.freq_offset_khz is not None:
            await ws.send_bytes(encode_msg(f"freq_offset={cfg.freq_offset_khz:.3f}"))
        await ws.send_bytes(encode_msg(f"audio_init=0 audio_rate={cfg.audio_rate}"))
        await ws.send_bytes(encode_msg(f"sample_rate={cfg.sample_rate:.3f}"))
        if not await self._wait(events, "ar_ok", "mod"):
            return
        await self._stream(request, ws, conn, events)

    async def _stream(self, request: web.Request, ws: web.WebSocketResponse, conn: int,
                      events: dict[str, asyncio.Event]) -> None:
        cfg = self.config
        spf = cfg.samples_per_frame
        interval = spf / cfg.sample_rate if cfg.realtime else cfg.frame_interval_s
        seq = cfg.start_sequence
        sample_index = 0
        self.frames_sent[conn] = 0
        self._sent_iq[conn] = []
        for _ in range(cfg.leading_audio_frames):
            await ws.send_bytes(encode_snd_audio(0x10, seq, cfg.smeter_raw, spf))
            seq += 1
        next_time = time.monotonic()
        for frame_no in range(cfg.max_frames):
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
            if cfg.mode == "gap" and frame_no == cfg.gap_after_frames:
                seq += cfg.gap_frames
                sample_index += cfg.gap_frames * spf
            flags = 0x08
            if cfg.little_endian:
                flags |= 0x80
            if cfg.mode == "compressed":
                flags |= 0x10
            if cfg.adc_overflow_every and (frame_no + 1) % cfg.adc_overflow_every == 0:
                flags |= 0x02
            iq = tone_iq(cfg, sample_index, spf)
            t = sample_index / cfg.sample_rate
            gps_s = cfg.gps_start_seconds + int(math.floor(t))
            gps_ns = int(round((t - math.floor(t)) * 1e9)) % 1_000_000_000
            frame = encode_snd_iq(flags, seq & 0xFFFFFFFF, cfg.smeter_raw, iq,
                                  last_gps_solution=cfg.gps_solution_age, gps_seconds=gps_s, gps_nanoseconds=gps_ns)
            try:
                await ws.send_bytes(frame)
            except Exception:  # noqa: BLE001 - client went away
                return
            self._sent_iq[conn].append(iq)
            self.frames_sent[conn] += 1
            seq += 1
            sample_index += spf
            if interval > 0:
                next_time += interval
                await asyncio.sleep(max(0.0, next_time - time.monotonic()))
            else:
                await asyncio.sleep(0)
        await events["closed"].wait()
