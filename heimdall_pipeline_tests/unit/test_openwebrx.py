"""The OpenWebRX audio client (sources/openwebrx.py) and the `openwebrx` kind against the test
double (heimdall_pipeline_tests/openwebrx_server.py, after luarvique/openwebrx 1.2.x): the
conversation, profile choice, backoff, the politeness gate and the robot-ban rule, audio metrics
and storage of an audio capture."""

import asyncio
import json
from datetime import datetime, timezone

import numpy as np
import pytest

from heimdall_pipeline.assets.metrics import measurement_row
from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.sessions import Session
from heimdall_pipeline.sources import openwebrx as owrx
from heimdall_pipeline.sources.acquisition import AcquisitionError, acquire_session
from heimdall_pipeline.sources.base import CaptureIO
from heimdall_pipeline.sources.dispatch import capture_function
from heimdall_pipeline.sources.kinds.openwebrx import OpenWebRXSource
from heimdall_pipeline.sources.registry import get_source
from heimdall_pipeline.storage.iq_format import capture_from_stored, encode_capture
from heimdall_pipeline.tdoa import timed_capture
from heimdall_pipeline.validation import validate_receiver
from heimdall_pipeline_tests.openwebrx_server import FakeOpenWebRX


class FakeClock:
    """Seconds that pass only when someone sleeps: shared by the gate and the double."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


def gate(tmp_path, clock=None, **kwargs) -> owrx.HostGate:
    clock = clock or FakeClock()
    return owrx.HostGate(tmp_path / "gate", clock=clock, sleep=clock.sleep, **kwargs)


def receiver(fake: FakeOpenWebRX, rid: str = "owrx1") -> Receiver:
    return validate_receiver(Receiver(id=rid, name="Fake OpenWebRX", url=fake.url, kind="openwebrx",
                                      location_name="Munich", latitude=48.1, longitude=11.6, retry_count=0))


def capture(fake, tmp_path, frequency_hz=7.1e6, duration_s=2.0, **kwargs):
    return asyncio.run(_capture(fake, tmp_path, frequency_hz, duration_s, **kwargs))


async def _capture(fake, tmp_path, frequency_hz, duration_s, **kwargs):
    async with fake:
        return await owrx.capture_audio(fake.url, frequency_hz=frequency_hz, duration_s=duration_s,
                                        gate=kwargs.pop("gate", None) or gate(tmp_path), **kwargs)


@pytest.mark.parametrize("compression", ["adpcm", "none"])
def test_a_capture_is_the_receivers_usb_audio(tmp_path, compression):
    fake = FakeOpenWebRX(audio_compression=compression, tone_hz=7_100_400.0)
    recording = capture(fake, tmp_path, duration_s=2.0)
    assert recording.samples.dtype == np.float32 and len(recording.samples) == 24_000
    assert recording.audio_compression == compression and recording.profile_changes == 0
    assert recording.dial_frequency_hz == 7.1e6 - 1450
    sent = [json.loads(m) for m in fake.connections[0].messages]
    assert [m["type"] for m in sent] == ["connectionproperties", "dspcontrol", "dspcontrol"]
    assert sent[0]["params"]["output_rate"] == 12_000
    assert sent[1]["params"] == {"offset_freq": -1450, "mod": "usb", "low_cut": 150.0, "high_cut": 2750.0,
                                 "squelch_level": -150}
    assert sent[2] == {"type": "dspcontrol", "action": "start"}
    # 4 S-meter readings a second of audio, after the 0.5 s skipped for the AGC
    assert 7 <= len(recording.smeter) <= 9 and {v for _, v in recording.smeter} == {1e-6 + 1e-8}
    spectrum = np.abs(np.fft.rfft(recording.samples * np.hanning(len(recording.samples))))
    assert abs(np.argmax(spectrum) * 12_000 / len(recording.samples) - 1850.0) <= 0.5  # 400 Hz above 1450
    if compression == "adpcm":
        assert recording.details["adpcm"]["syncs"] >= 12 and recording.details["adpcm"]["skipped_bytes"] == 0


def test_a_profile_is_selected_only_when_the_current_one_does_not_cover(tmp_path):
    fake = FakeOpenWebRX(tone_hz=14_200_000.0)
    recording = capture(fake, tmp_path, frequency_hz=14.2e6)
    sent = [json.loads(m) for m in fake.connections[0].messages]
    assert [m["type"] for m in sent] == ["connectionproperties", "selectprofile", "dspcontrol", "dspcontrol"]
    assert sent[1]["params"] == {"profile": "rtl|20m"}
    assert sent[2]["params"]["offset_freq"] == 14_200_000 - 1450 - 14_175_000
    assert recording.profile_changes == 1 and recording.profile_id == "rtl|20m"


def test_a_frequency_no_profile_covers_is_refused_without_a_profile_change(tmp_path):
    fake = FakeOpenWebRX()
    with pytest.raises(owrx.FrequencyNotCoveredError, match="no profile covers .* RTL-SDR 40m") as info:
        capture(fake, tmp_path, frequency_hz=3.6e6)
    assert not info.value.transient and fake.profile_changes == 0


@pytest.mark.parametrize("overrides,error,transient", [
    ({"max_clients": 0}, owrx.ReceiverBusyError, True),
    ({"mode": "no_sdr"}, owrx.SdrUnavailableError, True),
    ({"mode": "demodulator_error"}, owrx.DemodulatorError, False),
])
def test_backoff_and_errors(tmp_path, overrides, error, transient):
    with pytest.raises(error) as info:
        capture(FakeOpenWebRX(**overrides), tmp_path)
    assert info.value.transient is transient


def test_a_banned_address_is_not_retried_and_a_busy_one_waits_16_s(tmp_path):
    fake = FakeOpenWebRX()
    fake.bans["127.0.0.1"] = fake.clock() + 3600
    with pytest.raises(owrx.AddressBannedError, match="Client address banned"):
        capture(fake, tmp_path)

    clock = FakeClock()
    busy = FakeOpenWebRX(max_clients=0, clock=clock)
    shared = gate(tmp_path, clock)

    async def twice():
        async with busy:
            for _ in range(2):
                with pytest.raises(owrx.ReceiverBusyError):
                    await owrx.capture_audio(busy.url, frequency_hz=7.1e6, duration_s=1, gate=shared)

    asyncio.run(twice())
    (_, first), (_, second) = shared.connections
    assert second - first >= owrx.BUSY_RETRY_AFTER_S


def test_the_kind_turns_failures_into_acquisition_errors(tmp_path, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(OpenWebRXSource, "gate", lambda self: gate(tmp_path, clock))
    fake = FakeOpenWebRX(max_clients=0)
    session = Session(session_key="towrx1", center_frequency_hz=7.1e6, duration_s=1.0)

    async def run():
        async with fake:
            await get_source("openwebrx").capture(session, receiver(fake), CaptureIO())

    with pytest.raises(AcquisitionError, match="ReceiverBusyError.*Too many clients") as info:
        asyncio.run(run())
    assert info.value.transient and info.value.retry_after_s == owrx.BUSY_RETRY_AFTER_S


def test_a_survey_stays_below_the_robot_ban(tmp_path, monkeypatch):
    """Survey sessions cycle through frequencies on three bands of one receiver (two receivers of
    the registry on the same host, as a user may add both SDR pages): every session needs a profile
    change. The client connects once per receiver and session, never within 10 s of the previous
    connection to the host, and changes profile at most once per connection: the server's robot
    score (same rules as OpenWebRX+) never comes near 30."""
    clock = FakeClock()
    monkeypatch.setattr(OpenWebRXSource, "gate", lambda self: gate(tmp_path, clock))
    fake = FakeOpenWebRX(clock=clock)
    frequencies = [7.1e6, 10.1e6, 14.2e6] * 3

    async def survey():
        async with fake:
            receivers = [receiver(fake, "owrxa"), receiver(fake, "owrxb")]
            for i, frequency in enumerate(frequencies):
                session = Session(session_key=f"survey{i}", center_frequency_hz=frequency, duration_s=1.0)
                result = await acquire_session(receivers, capture_function(session), sleep=clock.sleep)
                assert result.complete, result.errors
                clock.now += 600 - 1  # the survey's next tick (schedule: every 10 minutes)

    asyncio.run(survey())
    assert len(fake.connections) == 2 * len(frequencies)  # one per receiver per session
    starts = [c.started for c in fake.connections]
    assert min(np.diff(starts)) >= owrx.MIN_RECONNECT_GAP_S
    assert fake.profile_changes <= len(fake.connections)
    assert all(len(c.profile_changes) <= 1 for c in fake.connections)
    assert fake.max_robot_score <= 10.0 and not fake.banned()


def test_the_double_bans_a_client_that_is_not_polite():
    """The rule the survey test measures against is live: connections held open together, or
    profile changes in quick succession, reach 30 and ban the address."""
    import aiohttp

    async def rude(fake, connections: int, changes: int):
        async with fake, aiohttp.ClientSession() as http:
            sockets = []
            for _ in range(connections):
                ws = await http.ws_connect(fake.url + "ws/")
                await ws.send_str("SERVER DE CLIENT client=rude type=receiver")
                await ws.receive()  # CLIENT DE SERVER
                sockets.append(ws)
                await asyncio.sleep(0.05)
            for _ in range(changes):
                await sockets[-1].send_str(json.dumps({"type": "selectprofile", "params": {"profile": "rtl|20m"}}))
                await asyncio.sleep(0.05)
            for ws in sockets:
                await ws.close()

    held = FakeOpenWebRX()
    asyncio.run(rude(held, connections=5, changes=0))  # scores ~0, 10, 20, 30, 40
    assert held.max_robot_score >= 30 and held.banned()
    assert held.connections[-1].refused == "Client address banned"

    fast = FakeOpenWebRX()
    asyncio.run(rude(fast, connections=1, changes=4))  # ~10 each
    assert fast.max_robot_score >= 30 and fast.banned()


def test_audio_metrics_on_a_capture(tmp_path):
    fake = FakeOpenWebRX(audio_compression="none", tone_hz=7_100_000.0 + 237.0)
    recording = capture(fake, tmp_path, duration_s=4.0)
    session = Session(session_key="towrxm", center_frequency_hz=7.1e6, duration_s=4.0,
                      scheduled_for=datetime(2024, 5, 1, tzinfo=timezone.utc))
    from heimdall_pipeline.sources.kinds.openwebrx import audio_capture

    cap = audio_capture(recording, session, receiver(fake))
    row = measurement_row(cap, "bucket")
    assert row.capture_signal == "audio" and row.power_unit == "dBFS" and row.signal_detected
    assert abs(row.frequency_offset_hz - 237.0) < 1.0 and abs(row.audio_frequency_hz - 1687.0) < 1.0
    assert abs(row.snr_db - 20.0) < 1.0  # channel -60 dB signal over -80 dB noise in the passband
    assert abs(row.smeter_dbfs - 10 * np.log10(1e-6 + 1e-8)) < 1e-6
    assert abs(row.signal_power_dbfs - (-60.0)) < 0.1 and abs(row.noise_power_dbfs - (-80.0)) < 1.0
    assert row.signal_power_dbm is None and row.noise_power_dbm is None
    assert row.metadata_json["units"]["audio_level_dbfs"].endswith("a relative figure only")

    # stored as a real-valued SigMF dataset, untimed, and back
    encoded = encode_capture(cap, receiver(fake), dataset_name="websdr_owrx1.npy")
    glob = encoded.metadata["global"]
    assert glob["core:datatype"] == "rf32_le" and glob["heimdall:signal"] == "audio"
    assert "without timestamps" in glob["heimdall:untimed_reason"] and "heimdall:time_model" not in glob
    back = capture_from_stored(encoded.npy_bytes, encoded.metadata_json, key_for_errors="k")
    np.testing.assert_array_equal(back.samples, cap.samples)
    assert back.is_audio and back.audio == json.loads(json.dumps(cap.audio))
    import sigmf

    sigmf_file = sigmf.SigMFFile(metadata=encoded.metadata)
    sigmf_file.validate()
    assert not sigmf_file.is_complex_data

    # TDoA refuses it with the reason
    timed = timed_capture(receiver(fake), back)
    assert timed.time_model is None and "not usable for TDoA" in timed.untimed_reason
