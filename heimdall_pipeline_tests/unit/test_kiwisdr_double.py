"""The KiwiSDR test double against what the real server does (jks-prv/Beagle_SDR_GPS rx/*.cpp),
seen from a bare websocket, and its replay of real kiwirecorder recordings through the client."""

from __future__ import annotations

import asyncio
import math

import aiohttp
import numpy as np
import pytest

from heimdall_pipeline.sources.kiwisdr import capture_iq, decode_snd_frame, parse_msg
from heimdall_pipeline.storage.kiwi_wav import read_kiwi_wav
from heimdall_pipeline_tests.data import DCF77_DIR
from heimdall_pipeline_tests.kiwisdr_server import FakeKiwiSDR

RECORDINGS = DCF77_DIR
TUNE = "SET mod=iq low_cut=-5000 high_cut=5000 freq=7100.000"
AGC = "SET agc=0 hang=0 thresh=-100 slope=6 decay=1000 manGain=50"
AR_OK = "SET AR OK in=12000 out=44100"


async def _frames(ws: aiohttp.ClientWebSocketResponse, timeout_s: float) -> list[tuple[bytes, bytes]]:
    """(tag, body) of every frame arriving within timeout_s."""
    out = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (left := deadline - loop.time()) > 0:
        try:
            msg = await asyncio.wait_for(ws.receive(), left)
        except (asyncio.TimeoutError, TimeoutError):
            break
        if msg.type != aiohttp.WSMsgType.BINARY:
            break
        out.append((bytes(msg.data[:3]), bytes(msg.data[3:])))
    return out


def _talk(kiwi: FakeKiwiSDR, commands: list[str], listen_s: float = 0.5) -> list[tuple[bytes, bytes]]:
    async def main():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"ws://127.0.0.1:{kiwi.port}/1/SND") as ws:
                frames = await _frames(ws, 0.3)  # before any command
                for text in commands:
                    await ws.send_str(text)
                return frames + await _frames(ws, listen_s)

    return asyncio.run(main())


def _params(frames: list[tuple[bytes, bytes]]) -> list[dict]:
    return [parse_msg(body) for tag, body in frames if tag == b"MSG"]


@pytest.mark.parametrize("mode, expected", [
    ("busy", {"too_busy": "4"}),
    ("down", {"reason_disabled": "Antenna%20maintenance%20until%20Monday", "down": "0"}),
    ("redirect", {"redirect": "http%3A%2F%2Fother.example%3A8073"}),
])
def test_refusals_come_on_connect_before_auth(mode, expected):
    with FakeKiwiSDR(mode=mode, redirect_to="http://other.example:8073") as kiwi:
        frames = _talk(kiwi, [], listen_s=0.1)
    assert _params(frames) == [expected]


def test_sample_rate_has_six_decimals_and_freq_offset_is_in_the_version_line():
    with FakeKiwiSDR(freq_offset_khz=10000.0) as kiwi:
        frames = _talk(kiwi, ["SET auth t=kiwi p="], listen_s=0.3)
    params = _params(frames)
    merged = {k: v for p in params for k, v in p.items()}
    assert merged["sample_rate"] == "12001.135000"
    version = next(p for p in params if "version_maj" in p)
    assert version["freq_offset"] == "10000.000"
    assert [next(iter(p)) for p in params][:5] == ["rx_chans", "chan_no_pwd", "is_local", "max_camp", "badp"]


@pytest.mark.parametrize("missing", [TUNE, AGC, AR_OK])
def test_no_audio_until_tune_agc_and_ar_ok(missing):
    commands = [c for c in ["SET auth t=kiwi p=", AR_OK, TUNE, AGC] if c != missing]
    with FakeKiwiSDR(realtime=False) as kiwi:
        frames = _talk(kiwi, commands, listen_s=0.4)
    assert not any(tag == b"SND" for tag, _ in frames)


def test_audio_is_paced_in_real_time():
    with FakeKiwiSDR() as kiwi:
        frames = _talk(kiwi, ["SET auth t=kiwi p=", AR_OK, TUNE, AGC], listen_s=0.5)
    snd = [decode_snd_frame(body) for tag, body in frames if tag == b"SND"]
    # 0.5 s of listening holds about 12 frames of 512 samples at 12 kHz, not thousands
    assert 3 <= len(snd) <= 20, len(snd)


def test_smeter_follows_the_level():
    levels = {}
    for amplitude in (1000, 10000):
        with FakeKiwiSDR(amplitude=amplitude, realtime=False, max_frames=10) as kiwi:
            frames = _talk(kiwi, ["SET auth t=kiwi p=", AR_OK, TUNE, AGC], listen_s=0.4)
        snd = [decode_snd_frame(body) for tag, body in frames if tag == b"SND"]
        levels[amplitude] = snd[-1].rssi_dbm
        assert levels[amplitude] == pytest.approx(20 * math.log10(amplitude / 32768) - 65.0, abs=0.11)
    assert levels[10000] - levels[1000] == pytest.approx(20.0, abs=0.2)


@pytest.mark.parametrize("station", ["HB9ODP", "JO51xl", "pa0rdt"])
def test_replay_of_a_real_recording_is_captured_bit_for_bit(station):
    path = RECORDINGS / f"20200813T065220Z_77500_{station}_iq.wav"
    recording = read_kiwi_wav(path)
    rate = 12001.0
    with FakeKiwiSDR(replay=path, gnss_clock="fixed", sample_rate=rate, realtime=False,
                     smeter_offset_db=-48.0) as kiwi:
        capture = asyncio.run(capture_iq(kiwi.receiver(), session_key="replay", center_frequency_hz=77.5e3,
                                         duration_s=len(recording.samples) / rate, retune_settle_s=0,
                                         frame_timeout_s=5.0))
    assert len(capture.samples) == len(recording.samples)
    np.testing.assert_array_equal(capture.samples, recording.samples)
    assert capture.gps_timestamps == recording.timestamps
    assert capture.calibration is not None
    assert capture.calibration["offset_db"] == pytest.approx(-48.0, abs=0.5)
