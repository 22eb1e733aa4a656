"""An OpenWebRX test double: an aiohttp.web server on 127.0.0.1 (random free port).

It follows luarvique/openwebrx 1.2.x (OpenWebRX+) in what a client can observe (``owrx/connection.py``,
``owrx/client.py``, ``owrx/controllers/status.py``, ``owrx/dsp.py``; csdr's ``AdpcmEncoder``):

- ``GET /status.json``: ``receiver`` (name, admin, gps {lat, lon}, asl, location), ``max_clients``,
  ``version``, ``sdrs`` [{name, type, profiles [{name, center_freq, sample_rate}]}].
- ``/ws/``: the client's ``SERVER DE CLIENT ... type=receiver`` is answered with ``CLIENT DE SERVER
  server=openwebrx version=v1.2.121``; then the receiver client is built: its robot score starts at
  the sum over the open connections from the same address of ``max(0, 10 - seconds since they
  started)``; at 30 (with ``bot_ban_enabled``) the address is banned for 12 hours; a banned address
  gets ``{"type": "backoff", "reason": "Client address banned"}``, a full server (``max_clients``)
  ``"Too many clients"``, and the socket is closed. Otherwise: ``config`` (global keys, with
  ``audio_compression``), ``config`` (the profile: ``center_freq``, ``samp_rate``, ``sdr_id``,
  ``profile_id``, ``start_freq``, ``start_mod``), ``features``, ``modes``, ``profiles``
  (``"<sdr>|<profile>"`` ids, names ``"<sdr name> <profile name>"``). With no SDR
  (``mode="no_sdr"``): ``sdr_error`` "No SDR Devices available".
- ``selectprofile``: robot score += ``10 - seconds since the last change (or the connection)``, or
  reset to 0 when that is negative; at 30 the address is banned (every connection from it closed);
  otherwise the profile switches and a new profile ``config`` follows.
- ``dspcontrol`` params are kept; ``"action": "start"`` starts the audio: binary frames ``0x02`` +
  int16 LE, or (``audio_compression="adpcm"``) IMA ADPCM with a ``SYNC`` block (int16 LE index,
  predictor) before the first and every 1001st data byte. The ADPCM is made by Python's
  ``audioop.lin2adpcm`` (an implementation the client's codec did not come from; its high nibble
  first order swapped to OpenWebRX's low nibble first). ``smeter`` four times a second of audio.
- The audio is a USB receiver's: a tone at RF ``tone_hz`` sounds at ``tone_hz - dial`` (dial =
  profile centre + ``offset_freq``) when inside ``low_cut..high_cut``, plus Gaussian noise limited
  to that passband, scaled as an AGC would (``audio_tone_amplitude`` of full scale). The S-meter
  reads the channel's linear power: ``channel_signal_power`` (when the tone is in the passband)
  plus ``channel_noise_power``; the audio's tone-to-noise ratio equals theirs.

Time for the ban rules comes from ``clock`` (seconds), so a test can share a fake clock with the
client's politeness gate. Audio is sent as fast as the loop allows (no real-time pacing).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
import warnings
from typing import Any, Callable

import numpy as np
import scipy.signal
from aiohttp import WSMsgType, web

from heimdall_pipeline_tests.loopback_server import LoopbackServer

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # deprecated in 3.11, still present
    import audioop

VERSION = "v1.2.121"
BAN_MINUTES = 60 * 12
ROBOT_BAN_SCORE = 30


@dataclasses.dataclass(frozen=True)
class FakeProfile:
    sdr_id: str
    sdr_name: str
    profile_id: str
    name: str
    center_freq: int
    samp_rate: int


DEFAULT_PROFILES = (
    FakeProfile("rtl", "RTL-SDR", "40m", "40m", 7_100_000, 2_400_000),
    FakeProfile("rtl", "RTL-SDR", "30m", "30m", 10_125_000, 2_400_000),
    FakeProfile("rtl", "RTL-SDR", "20m", "20m", 14_175_000, 2_400_000),
)


@dataclasses.dataclass
class FakeOpenWebRXConfig:
    name: str = "Fake OpenWebRX"
    gps: dict | None = dataclasses.field(default_factory=lambda: {"lat": 48.1, "lon": 11.6})
    asl: float = 520.0
    location: str = "Munich"
    profiles: tuple[FakeProfile, ...] = DEFAULT_PROFILES
    audio_compression: str = "adpcm"
    max_clients: int = 20
    bot_ban_enabled: bool = True
    mode: str = "normal"  # normal | no_sdr | demodulator_error
    tone_hz: float = 7_100_400.0
    audio_tone_amplitude: float = 0.25
    channel_signal_power: float = 1e-6  # linear, relative to the SDR's full scale (-60 dB)
    channel_noise_power: float = 1e-8  # in the channel's passband (-80 dB)
    samples_per_frame: int = 2048
    seed: int = 5


@dataclasses.dataclass
class ConnectionLog:
    number: int
    started: float
    robot_score_at_connect: float
    refused: str | None = None
    robot_alert: float = 0.0
    last_profile_change: float = 0.0
    messages: list = dataclasses.field(default_factory=list)
    profile_changes: list = dataclasses.field(default_factory=list)  # (time, score after)
    dsp: dict = dataclasses.field(default_factory=dict)
    started_audio: bool = False
    audio_samples_sent: int = 0
    smeter_sent: int = 0


class FakeOpenWebRX(LoopbackServer):
    thread_name = "fake-openwebrx"

    def __init__(self, config: FakeOpenWebRXConfig | None = None, *, clock: Callable[[], float] | None = None,
                 **overrides: Any):
        config = config or FakeOpenWebRXConfig()
        self.config = dataclasses.replace(config, **overrides) if overrides else config
        self.clock = clock or time.time
        self.connections: list[ConnectionLog] = []
        self.open: list[ConnectionLog] = []  # the client registry: open receiver clients
        self.bans: dict[str, float] = {}
        self.max_robot_score = 0.0
        self.current = self.config.profiles[0] if self.config.profiles else None
        self._sockets: dict[int, web.WebSocketResponse] = {}

    # ---------------------------------------------------------------------------- helpers
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}/"

    @property
    def profile_changes(self) -> int:
        return sum(len(c.profile_changes) for c in self.connections)

    def banned(self, ip: str = "127.0.0.1") -> bool:
        return self.bans.get(ip, -math.inf) > self.clock()

    def status(self) -> dict:
        sdrs: dict[str, dict] = {}
        for p in self.config.profiles:
            sdrs.setdefault(p.sdr_id, {"name": p.sdr_name, "type": "RtlSdrSource", "profiles": []})["profiles"].append(
                {"name": p.name, "center_freq": p.center_freq, "sample_rate": p.samp_rate})
        receiver = {"name": self.config.name, "admin": "test@example.org", "gps": self.config.gps,
                    "asl": self.config.asl, "location": self.config.location}
        return {"receiver": receiver, "max_clients": self.config.max_clients, "version": VERSION,
                "sdrs": list(sdrs.values())}

    # ---------------------------------------------------------------------------- lifecycle
    async def start(self) -> "FakeOpenWebRX":
        app = web.Application()
        app.router.add_get("/status.json", self._status)
        app.router.add_get("/ws/", self._ws)
        await self.serve(app)
        return self

    async def stop(self) -> None:
        for ws in list(self._sockets.values()):
            try:
                await asyncio.wait_for(ws.close(), 0.5)
            except Exception:  # noqa: BLE001
                pass
        await self.cleanup()

    # ---------------------------------------------------------------------------- protocol
    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())

    def _robot_score(self, now: float) -> float:
        return sum(max(0.0, 10.0 - (now - c.started)) for c in self.open)

    def _ban(self, ip: str) -> None:
        self.bans[ip] = self.clock() + BAN_MINUTES * 60

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        ip = request.remote or "?"
        log: ConnectionLog | None = None
        stream: asyncio.Task | None = None
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                if log is None:
                    if not msg.data.startswith("SERVER DE CLIENT") or "type=receiver" not in msg.data:
                        continue  # the real server does not answer before a valid handshake
                    await ws.send_str(f"CLIENT DE SERVER server=openwebrx version={VERSION}")
                    log = await self._new_client(ws, ip)
                    if log.refused:
                        break
                    continue
                log.messages.append(msg.data)
                message = json.loads(msg.data)
                kind = message.get("type")
                if kind == "connectionproperties":
                    log.dsp.update(message.get("params", {}))
                elif kind == "dspcontrol":
                    log.dsp.update(message.get("params", {}))
                    if message.get("action") == "start" and stream is None:
                        if self.config.mode == "demodulator_error":
                            await ws.send_json({"type": "demodulator_error", "value": "codecserver unavailable"})
                            continue
                        log.started_audio = True
                        stream = asyncio.create_task(self._stream(ws, log))
                elif kind == "selectprofile":
                    if not await self._select_profile(ws, log, ip, message["params"]["profile"]):
                        break
        finally:
            if stream is not None:
                stream.cancel()
                await asyncio.gather(stream, return_exceptions=True)
            if log is not None and log in self.open:
                self.open.remove(log)
                self._sockets.pop(log.number, None)
            await ws.close()
        return ws

    async def _new_client(self, ws: web.WebSocketResponse, ip: str) -> ConnectionLog:
        now = self.clock()
        log = ConnectionLog(number=len(self.connections) + 1, started=now, robot_score_at_connect=self._robot_score(now))
        log.robot_alert = log.robot_score_at_connect
        log.last_profile_change = now
        self.connections.append(log)
        self.max_robot_score = max(self.max_robot_score, log.robot_alert)
        if log.robot_alert >= ROBOT_BAN_SCORE and self.config.bot_ban_enabled:
            self._ban(ip)
        if self.banned(ip):
            log.refused = "Client address banned"
        elif len(self.open) >= self.config.max_clients:
            log.refused = "Too many clients"
        if log.refused:
            await ws.send_json({"type": "backoff", "reason": log.refused})
            return log
        self.open.append(log)
        self._sockets[log.number] = ws
        await ws.send_json({"type": "config", "value": {
            "audio_compression": self.config.audio_compression, "fft_compression": "adpcm",
            "max_clients": self.config.max_clients, "receiver_gps": self.config.gps, "fft_size": 4096}})
        if self.current is None or self.config.mode == "no_sdr":
            await ws.send_json({"type": "sdr_error", "value": "No SDR Devices available"})
        else:
            await self._send_profile_config(ws)
        await ws.send_json({"type": "features", "value": {}})
        await ws.send_json({"type": "modes", "value": [{"modulation": "usb", "name": "USB", "type": "analog",
                                                        "bandpass": {"low_cut": 150, "high_cut": 2750}}]})
        await ws.send_json({"type": "profiles", "value": [
            {"id": f"{p.sdr_id}|{p.profile_id}", "name": f"{p.sdr_name} {p.name}"} for p in self.config.profiles]})
        return log

    async def _send_profile_config(self, ws: web.WebSocketResponse) -> None:
        p = self.current
        await ws.send_json({"type": "config", "value": {
            "center_freq": p.center_freq, "samp_rate": p.samp_rate, "sdr_id": p.sdr_id, "profile_id": p.profile_id,
            "start_freq": p.center_freq, "start_offset_freq": 0, "start_mod": "usb", "tuning_step": 10}})

    async def _select_profile(self, ws, log: ConnectionLog, ip: str, value: str) -> bool:
        now = self.clock()
        score = 10.0 - (now - log.last_profile_change)
        log.last_profile_change = now
        log.robot_alert = 0.0 if score < 0 else log.robot_alert + score
        log.profile_changes.append((now, log.robot_alert))
        self.max_robot_score = max(self.max_robot_score, log.robot_alert)
        if log.robot_alert >= ROBOT_BAN_SCORE and self.config.bot_ban_enabled:
            self._ban(ip)
            for other in [c for c in self.open if c is not log]:
                await self._sockets[other.number].close()
            return False
        sdr_id, _, profile_id = value.partition("|")
        for p in self.config.profiles:
            if (p.sdr_id, p.profile_id) == (sdr_id, profile_id):
                self.current = p
                await self._send_profile_config(ws)
        return True

    async def _stream(self, ws: web.WebSocketResponse, log: ConnectionLog) -> None:
        cfg = self.config
        rate = int(log.dsp.get("output_rate", 12000))
        rng = np.random.default_rng(cfg.seed + log.number)
        low, high = float(log.dsp.get("low_cut", 150)), float(log.dsp.get("high_cut", 2750))
        taps = scipy.signal.firwin(255, [max(low, 1.0), min(high, rate / 2 - 1)], pass_zero=False, fs=rate)
        dial = self.current.center_freq + int(log.dsp.get("offset_freq", 0))
        audio_tone = cfg.tone_hz - dial
        in_band = low <= audio_tone <= high
        amplitude = cfg.audio_tone_amplitude if in_band else 0.0
        # the noise in the passband has the channel's signal-to-noise ratio (an AGC scales both)
        noise_power = (cfg.audio_tone_amplitude ** 2 / 2) * cfg.channel_noise_power / cfg.channel_signal_power
        noise_sigma = math.sqrt(noise_power / float(np.sum(taps ** 2)))
        smeter = cfg.channel_noise_power + (cfg.channel_signal_power if in_band else 0.0)
        filter_state = np.zeros(len(taps) - 1)
        adpcm_state = None
        until_sync = 0
        n = 0
        next_smeter = 0
        while True:
            count = cfg.samples_per_frame
            t = (n + np.arange(count)) / rate
            noise, filter_state = scipy.signal.lfilter(taps, 1.0, rng.normal(0.0, noise_sigma, count), zi=filter_state)
            audio = amplitude * np.sin(2 * np.pi * audio_tone * t) + noise
            ints = np.clip(np.round(audio * 32767), -32768, 32767).astype("<i2")
            if cfg.audio_compression == "adpcm":
                payload = bytearray()
                for pair in range(count // 2):
                    if until_sync == 0:
                        predictor, index = adpcm_state or (0, 0)
                        payload += b"SYNC" + int(index).to_bytes(2, "little", signed=True) \
                            + int(predictor).to_bytes(2, "little", signed=True)
                        until_sync = 1001
                    code, adpcm_state = audioop.lin2adpcm(ints[2 * pair:2 * pair + 2].tobytes(), 2, adpcm_state)
                    payload.append(((code[0] & 0x0F) << 4) | (code[0] >> 4))  # audioop: first sample high
                    until_sync -= 1
                data = bytes(payload)
            else:
                data = ints.tobytes()
            await ws.send_bytes(b"\x02" + data)
            n += count
            log.audio_samples_sent = n
            while n >= next_smeter:
                await ws.send_json({"type": "smeter", "value": smeter})
                log.smeter_sent += 1
                next_smeter += rate // 4
            await asyncio.sleep(0)
