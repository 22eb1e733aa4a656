"""KiwiSDR IQ client against the fake KiwiSDR server (no network beyond 127.0.0.1)."""

from __future__ import annotations

import asyncio
import math
import socket
import struct

import aiohttp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heimdall_pipeline.sources.acquisition import AcquisitionError, acquire_with_retries
from heimdall_pipeline.capture import Capture
from heimdall_pipeline.sources.kiwisdr import (
    CompressedStreamError,
    FrequencyOutOfRangeError,
    ProtocolError,
    ReceiverAuthError,
    ReceiverBusyError,
    ReceiverConnectionError,
    ReceiverDownError,
    ReceiverTimeoutError,
    StreamInterruptedError,
    capture_iq,
    decode_snd_frame,
    kiwi_stream_url,
    parse_msg,
)
from heimdall_pipeline.sources.registry import get_source
from heimdall_pipeline_tests.kiwisdr_server import FakeKiwiConfig, FakeKiwiSDR, encode_snd_iq

RATE = 12001.135
FREQ_HZ = 7_100_123.4
FAST = {"realtime": False}  # protocol-only tests: the double streams as fast as it can


def start_of(cap: Capture) -> int:
    """Stream index of the capture's first sample (the client skips past the server's re-tune)."""
    return cap.details["retune"]["skipped_samples"]


def capture(kiwi: FakeKiwiSDR, duration_s: float = 0.5, **kwargs) -> Capture:
    receiver = kwargs.pop("receiver", None) or kiwi.receiver()
    kwargs.setdefault("frame_timeout_s", 2.0)
    kwargs.setdefault("connect_timeout_s", 2.0)
    kwargs.setdefault("frequency_range_hz", get_source("kiwisdr").frequency_range_hz(receiver))  # as the kind does
    return asyncio.run(capture_iq(receiver, session_key="sess-1", center_frequency_hz=kwargs.pop("freq", FREQ_HZ),
                                  duration_s=duration_s, **kwargs))


def expect_error(kiwi: FakeKiwiSDR, error: type[Exception], **kwargs) -> Exception:
    with pytest.raises(error) as info:
        capture(kiwi, **kwargs)
    return info.value


# ----------------------------------------------------------------------------- normal capture


def test_normal_capture_decodes_exact_samples_and_true_rate():
    with FakeKiwiSDR(**FAST) as kiwi:
        cap = capture(kiwi, duration_s=0.5)
    n = round(0.5 * RATE)
    assert n == 6001
    assert cap.samples.dtype == np.complex64 and cap.samples.shape == (n,)
    np.testing.assert_array_equal(cap.samples, kiwi.expected_tone(n, start=start_of(cap)))
    assert cap.sample_rate_hz == pytest.approx(RATE, abs=1e-9)
    assert isinstance(cap.sample_rate_hz, float)
    assert cap.center_frequency_hz == FREQ_HZ
    assert cap.receiver_id == "fakekiwi" and cap.session_key == "sess-1" and cap.source_kind == "kiwisdr"
    assert cap.start_time.tzinfo is not None
    d = cap.details
    assert d["reported_sample_rate_hz"] == RATE
    assert d["nominal_audio_rate_hz"] == 12000
    assert d["server_version"] == "1.550"
    assert d["bandwidth_hz"] == 30e6
    assert d["dropped_frames"] == 0 and d["sequence_gaps"] == []
    assert d["adc_overflow_frames"] == 0
    assert d["rssi_dbm"]["count"] == 12
    assert d["rssi_dbm"]["min"] == pytest.approx(-77.2, abs=0.1) and d["rssi_dbm"]["max"] == pytest.approx(-77.2, abs=0.1)
    assert d["sample_scale"] == 1 / 32768 and cap.power_unit == "dBFS"
    import json

    json.dumps(d)  # JSON-serialisable


def test_gps_timestamps_recorded_per_frame():
    with FakeKiwiSDR(gnss_clock="fixed", **FAST) as kiwi:
        cap = capture(kiwi, duration_s=0.5)
    frames = math.ceil(6001 / 512)
    assert len(cap.gps_timestamps) == frames
    assert [g.sample_index for g in cap.gps_timestamps] == [512 * i for i in range(frames)]
    assert all(g.has_solution for g in cap.gps_timestamps)
    assert all(g.fix_age_s == 3 for g in cap.gps_timestamps)  # the double's last_gps_solution
    g5 = cap.gps_timestamps[5]
    t = (start_of(cap) + 5 * 512) / RATE
    assert g5.gps_seconds == 345600 + int(t)
    assert g5.gps_nanoseconds == pytest.approx((t - int(t)) * 1e9, abs=2)
    assert cap.details["gps"]["frames_with_solution"] == frames


@pytest.mark.parametrize("age", [254, 255])
def test_no_gps_clock_is_recorded_as_no_solution(age):
    with FakeKiwiSDR(gps_solution_age=age, **FAST) as kiwi:
        cap = capture(kiwi, duration_s=0.1)
    assert cap.gps_timestamps and not any(g.has_solution for g in cap.gps_timestamps)
    assert {g.fix_age_s for g in cap.gps_timestamps} == {age}


def test_fresh_fix_has_age_zero():
    with FakeKiwiSDR(gps_solution_age=0, **FAST) as kiwi:
        cap = capture(kiwi, duration_s=0.1)
    assert all(g.has_solution and g.fix_age_s == 0 for g in cap.gps_timestamps)


def test_commands_sent_in_protocol_order():
    with FakeKiwiSDR() as kiwi:
        capture(kiwi, duration_s=0.2)
    cmds = kiwi.commands
    assert cmds[0] == "SET auth t=kiwi p="
    assert "SET AR OK in=12000 out=44100" in cmds
    mod = "SET mod=iq low_cut=-5000 high_cut=5000 freq=7100.123"  # no offset: baseband = absolute
    assert mod in cmds
    assert cmds.index("SET AR OK in=12000 out=44100") < cmds.index(mod)
    agc = "SET agc=0 hang=0 thresh=-100 slope=6 decay=1000 manGain=50"
    assert cmds.index(mod) < cmds.index(agc)
    assert "SET compression=0" in cmds and "SET squelch=0 max=0" in cmds
    assert all(c.startswith("SET ") for c in cmds)


def test_passband_and_password_are_sent():
    with FakeKiwiSDR(password="s3cret", **FAST) as kiwi:
        cap = capture(kiwi, duration_s=0.1, password="s3cret", passband_hz=(-3000, 4000), freq=10e6)
    assert kiwi.commands[0] == "SET auth t=kiwi p=s3cret"
    assert "SET mod=iq low_cut=-3000 high_cut=4000 freq=10000.000" in kiwi.commands
    assert cap.details["passband_hz"] == [-3000.0, 4000.0]


def test_keepalive_at_most_once_per_second():
    with FakeKiwiSDR(realtime=True) as kiwi:
        cap = capture(kiwi, duration_s=1.6)
    times = [c.time_s for c in kiwi.commands_received if c.text == "SET keepalive"]
    assert len(times) >= 2, "the client must keep the connection alive"
    assert all(b - a >= 0.95 for a, b in zip(times, times[1:])), times
    assert len(cap.samples) == round(1.6 * RATE)


def test_little_endian_flag_is_honoured():
    with FakeKiwiSDR(little_endian=True, **FAST) as kiwi:
        cap = capture(kiwi, duration_s=0.2)
    np.testing.assert_array_equal(cap.samples, kiwi.expected_tone(len(cap.samples), start=start_of(cap)))


def test_adc_overflow_frames_counted():
    with FakeKiwiSDR(adc_overflow_every=3, **FAST) as kiwi:
        cap = capture(kiwi, duration_s=0.5)  # 12 frames used, starting at stream frame 42
    assert start_of(cap) == 42 * 512
    assert cap.details["adc_overflow_frames"] == 4 and cap.details["quality"]["adc_overflow_frames"] == 4


def test_leading_audio_frames_are_skipped():
    with FakeKiwiSDR(leading_audio_frames=2, **FAST) as kiwi:
        cap = capture(kiwi, duration_s=0.2)
    assert cap.details["skipped_non_iq_frames"] == 2
    np.testing.assert_array_equal(cap.samples, kiwi.expected_tone(len(cap.samples), start=start_of(cap)))


def test_redirect_is_followed():
    with FakeKiwiSDR(**FAST) as target, FakeKiwiSDR(mode="redirect", redirect_to=None) as first:
        first.config.redirect_to = target.url
        cap = capture(first, duration_s=0.1)
    assert cap.details["redirects"] == [target.url]
    assert target.connections == 1
    assert len(cap.samples) == round(0.1 * RATE)


def test_async_usage_with_shared_session():
    async def main():
        async with FakeKiwiSDR(**FAST) as kiwi, aiohttp.ClientSession() as session:
            caps = await asyncio.gather(*(
                capture_iq(kiwi.receiver(f"rx{i}"), session_key="s", center_frequency_hz=5e6, duration_s=0.1,
                           session=session)
                for i in range(3)
            ))
            return kiwi, caps

    kiwi, caps = asyncio.run(main())
    assert kiwi.connections == 3
    assert [c.receiver_id for c in caps] == ["rx0", "rx1", "rx2"]
    for c in caps:
        np.testing.assert_array_equal(c.samples, kiwi.expected_tone(len(c.samples), start=start_of(c)))


# ----------------------------------------------------------------------------- failures


def test_server_full_raises_busy_transient():
    with FakeKiwiSDR(mode="busy") as kiwi:
        err = expect_error(kiwi, ReceiverBusyError)
    assert err.transient is True and err.receiver_id == "fakekiwi"
    assert isinstance(err, AcquisitionError)


@pytest.mark.parametrize("code", [5, 6])
def test_temporary_badp_is_retried_with_backoff(code):
    sleeps = []

    async def no_sleep(delay):
        sleeps.append(delay)

    with FakeKiwiSDR(refused_connections=1, badp_code=code, **FAST) as kiwi:
        receiver = kiwi.receiver(retry_count=2)

        async def capture_one(rx, attempt):
            return await capture_iq(rx, session_key="s", center_frequency_hz=7e6, duration_s=0.1)

        cap = asyncio.run(acquire_with_retries(receiver, capture_one, sleep=no_sleep))
        assert kiwi.connections == 2
    assert len(sleeps) == 1 and len(cap.samples) == round(0.1 * RATE)


@pytest.mark.parametrize("code", [5, 6])
def test_temporary_badp_is_transient(code):
    with FakeKiwiSDR(mode="bad_password", badp_code=code) as kiwi:
        err = expect_error(kiwi, ReceiverAuthError)
    assert err.transient is True and f"badp={code}" in str(err)


@pytest.mark.parametrize("code", [1, 3, 4, 7])
def test_final_badp_is_not_transient(code):
    with FakeKiwiSDR(mode="bad_password", badp_code=code) as kiwi:
        err = expect_error(kiwi, ReceiverAuthError)
    assert err.transient is False and f"badp={code}" in str(err)


def test_bad_password_raises_auth_error_not_transient():
    with FakeKiwiSDR(mode="bad_password") as kiwi:
        err = expect_error(kiwi, ReceiverAuthError)
    assert err.transient is False and "fakekiwi" in str(err)


def test_wrong_password_refused():
    with FakeKiwiSDR(password="right") as kiwi:
        err = expect_error(kiwi, ReceiverAuthError, password="wrong")
    assert err.transient is False


def test_down_raises_down_error_with_the_reason():
    with FakeKiwiSDR(mode="down", reason_disabled="Antenna work, back Monday") as kiwi:
        err = expect_error(kiwi, ReceiverDownError)
    assert err.transient is True
    assert "Antenna work, back Monday" in str(err) and "down=0" in str(err)


def test_down_for_an_update():
    with FakeKiwiSDR(mode="down", down_type=1) as kiwi:
        err = expect_error(kiwi, ReceiverDownError)
    assert "updating" in str(err) and "down=1" in str(err)


def test_drop_mid_stream_names_counts():
    with FakeKiwiSDR(mode="drop", drop_after_frames=46, **FAST) as kiwi:
        err = expect_error(kiwi, StreamInterruptedError, duration_s=0.5)
    assert err.transient is True  # 42 frames before the re-tune settle, 4 stored
    assert err.samples_received == 4 * 512 and err.samples_expected == 6001
    assert "2048 of 6001 samples" in str(err)


def test_garbage_frame_raises_protocol_error():
    with FakeKiwiSDR(mode="garbage", **FAST) as kiwi:
        err = expect_error(kiwi, ProtocolError)
    assert err.transient is False


def test_compressed_iq_refused_by_name():
    with FakeKiwiSDR(mode="compressed", **FAST) as kiwi:
        err = expect_error(kiwi, CompressedStreamError)
    assert isinstance(err, ProtocolError) and err.transient is False
    assert "compress" in str(err)


def test_sequence_gap_is_zero_filled_annotated_and_counted():
    # frames 45 and 46 of the stream never arrive: 3 frames after the capture's start (stream frame 42)
    with FakeKiwiSDR(mode="gap", gap_after_frames=45, gap_frames=2, **FAST) as kiwi:
        cap = capture(kiwi, duration_s=0.5)
    n = len(cap.samples)
    assert n == 6001 and start_of(cap) == 42 * 512
    assert cap.details["dropped_frames"] == 2
    assert cap.details["sequence_gaps"] == [{"sample_index": 3 * 512, "sample_count": 1024,
                                             "after_sequence": 100 + 44, "missing_frames": 2}]
    assert cap.details["quality"]["sequence_gaps"] == 1 and cap.details["quality"]["zero_filled_samples"] == 1024
    # index = time: every sample is where the server produced it, the lost ones are zeros
    expected = kiwi.expected_tone(n, start=start_of(cap))
    expected[1536:2560] = 0
    np.testing.assert_array_equal(cap.samples, expected)
    # the GPS tags continue at the true sample positions
    assert [g.sample_index for g in cap.gps_timestamps][3:5] == [2560, 3072]


def test_retune_region_is_skipped():
    with FakeKiwiSDR() as kiwi:  # real-time pacing, like the server
        cap = capture(kiwi, duration_s=0.3)
    retune = kiwi.retune_sample_index[1]
    assert 0 < retune <= 1.5 * RATE
    assert cap.details["retune"]["handling"] == "skipped"
    assert start_of(cap) >= retune  # nothing from before the re-tune is stored
    np.testing.assert_array_equal(cap.samples, kiwi.expected_tone(len(cap.samples), start=start_of(cap)))


def test_retune_region_is_marked_when_kept():
    with FakeKiwiSDR(**FAST) as kiwi:
        cap = capture(kiwi, duration_s=2.0, retune_settle_s=0)
    retune = kiwi.retune_sample_index[1]
    marked = cap.details["retune"]
    assert marked["handling"] == "marked" and start_of(cap) == 0
    assert retune <= marked["sample_count"] < len(cap.samples)
    # the double's pre-re-tune IQ is rotated: it is inside the marked region, the rest is clean
    clean = kiwi.expected_tone(len(cap.samples))
    assert not np.array_equal(cap.samples[:retune], clean[:retune])
    np.testing.assert_array_equal(cap.samples[retune:], clean[retune:])


def test_dat_frames_are_skipped():
    with FakeKiwiSDR(dat_every=5, **FAST) as kiwi:
        cap = capture(kiwi, duration_s=0.5)
    assert cap.details["skipped_dat_frames"] >= 10
    np.testing.assert_array_equal(cap.samples, kiwi.expected_tone(len(cap.samples), start=start_of(cap)))


# ----------------------------------------------------------------------------- frequency offset


def test_freq_offset_tunes_the_baseband_frequency():
    # a KiwiSDR behind a 10 MHz converter: 17.1 MHz is 7100 kHz on its own scale
    with FakeKiwiSDR(freq_offset_khz=10000.0, **FAST) as kiwi:
        receiver = kiwi.receiver(min_frequency_hz=10e6, max_frequency_hz=40e6)
        cap = capture(kiwi, receiver=receiver, freq=17.1e6, duration_s=0.1)
    assert "SET mod=iq low_cut=-5000 high_cut=5000 freq=7100.000" in kiwi.commands
    assert kiwi.tuned_khz[1] == [7100.0]
    assert cap.center_frequency_hz == 17.1e6 and cap.details["freq_offset_hz"] == 10e6
    assert cap.details["tuned_baseband_khz"] == 7100.0


def test_freq_offset_shifts_the_valid_range():
    with FakeKiwiSDR(freq_offset_khz=10000.0, **FAST) as kiwi:
        receiver = kiwi.receiver(max_frequency_hz=45e6)  # registered too wide: the server knows better
        err = expect_error(kiwi, FrequencyOutOfRangeError, receiver=receiver, freq=5e6)
        assert not any(c.startswith("SET mod=") for c in kiwi.commands)
    assert "10-40 MHz" in str(err)


# ----------------------------------------------------------------------------- units


def _power_dbfs(samples: np.ndarray) -> float:
    return 10 * math.log10(float(np.mean(np.abs(samples.astype(np.complex128)) ** 2)))


@pytest.mark.parametrize("amplitude, noise_dbfs", [(8000, None), (0, -40.0), (2000, -35.0)])
def test_calibrated_power_matches_the_known_input_level(amplitude, noise_dbfs):
    # the double's input level in dBm: tone and noise power in dBFS plus its S-meter calibration
    offset = -71.3
    tone_mw = (amplitude / 32768) ** 2
    noise_mw = 0.0 if noise_dbfs is None else 10 ** (noise_dbfs / 10)
    input_dbm = 10 * math.log10(tone_mw + noise_mw) + offset
    with FakeKiwiSDR(amplitude=amplitude, noise_dbfs=noise_dbfs, smeter_offset_db=offset, **FAST) as kiwi:
        cap = capture(kiwi, duration_s=1.0)
    assert cap.power_unit == "dBFS"
    assert cap.calibration is not None and cap.calibration["frames"] >= 20
    assert abs(_power_dbfs(cap.samples) + cap.calibration["offset_db"] - input_dbm) <= 0.5
    assert cap.calibration["spread_db"] < 1.0


def test_pinned_smeter_gives_no_calibration():
    with FakeKiwiSDR(smeter_raw=0, **FAST) as kiwi:  # -127 dBm: the server's lower clamp
        cap = capture(kiwi, duration_s=0.5)
    assert cap.power_unit == "dBFS" and cap.calibration is None
    assert cap.details["smeter"]["pinned_frames"] == 12


def test_slow_server_times_out():
    with FakeKiwiSDR(mode="slow") as kiwi:
        err = expect_error(kiwi, ReceiverTimeoutError, frame_timeout_s=0.3)
    assert err.transient is True


def test_connection_refused_is_transient():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with FakeKiwiSDR() as kiwi:
        receiver = kiwi.receiver(url=f"http://127.0.0.1:{port}")
        err = expect_error(kiwi, ReceiverConnectionError, receiver=receiver)
    assert err.transient is True


def test_vhf_frequency_refused_before_connecting():
    with FakeKiwiSDR() as kiwi:
        err = expect_error(kiwi, FrequencyOutOfRangeError, freq=145.5e6)
        assert kiwi.connections == 0
    assert err.transient is False and err.receiver_id == "fakekiwi"
    msg = str(err)
    assert "fakekiwi" in msg and "145.5 MHz" in msg and "0-30 MHz" in msg


def test_server_reported_bandwidth_is_checked():
    with FakeKiwiSDR(bandwidth_hz=30e6) as kiwi:
        receiver = kiwi.receiver(max_frequency_hz=32e6)
        err = expect_error(kiwi, FrequencyOutOfRangeError, receiver=receiver, freq=31e6)
        assert kiwi.connections == 1
        assert not any(c.startswith("SET mod=") for c in kiwi.commands)
    assert "server reports" in str(err) and "0-30 MHz" in str(err)


def test_non_kiwisdr_receiver_refused():
    with FakeKiwiSDR() as kiwi:
        sim = kiwi.receiver(kind="simulated", url="sim://x")
        with pytest.raises(AcquisitionError):
            capture(kiwi, receiver=sim)


# ----------------------------------------------------------------------------- pure helpers


def test_stream_url():
    assert kiwi_stream_url("http://kiwi.example:8073", 123) == "ws://kiwi.example:8073/123/SND"
    assert kiwi_stream_url("https://kiwi.example/", 5) == "wss://kiwi.example/5/SND"
    assert kiwi_stream_url("ws://h:1/prefix/", 7) == "ws://h:1/prefix/7/SND"
    with pytest.raises(ValueError):
        kiwi_stream_url("sim://x", 1)


def test_parse_msg():
    assert parse_msg(b" audio_init=0 audio_rate=12000") == {"audio_init": "0", "audio_rate": "12000"}
    assert parse_msg(b" down") == {"down": None}
    assert parse_msg(b" redirect=http%3A%2F%2Fx%3A1") == {"redirect": "http%3A%2F%2Fx%3A1"}


def test_short_snd_frame_is_protocol_error():
    with pytest.raises(ProtocolError):
        decode_snd_frame(b"\x08\x01\x00", "r")
    body = struct.pack("<BI", 0x08, 1) + struct.pack(">H", 0) + b"\x00" * 5
    with pytest.raises(ProtocolError):
        decode_snd_frame(body, "r")
    odd = struct.pack("<BI", 0x08, 1) + struct.pack(">H", 0) + b"\x00" * 10 + b"\x00" * 6
    with pytest.raises(ProtocolError):
        decode_snd_frame(odd, "r")


@settings(max_examples=60, deadline=None)
@given(
    ints=st.lists(st.tuples(st.integers(-32768, 32767), st.integers(-32768, 32767)), max_size=64),
    little=st.booleans(),
    overflow=st.booleans(),
    seq=st.integers(0, 2**32 - 1),
    smeter=st.integers(0, 65535),
    gps=st.tuples(st.integers(0, 255), st.integers(0, 2**32 - 1), st.integers(0, 999_999_999)),
)
def test_snd_frame_round_trip(ints, little, overflow, seq, smeter, gps):
    iq = np.array(ints, dtype=np.int16).reshape(-1, 2)
    flags = 0x08 | (0x80 if little else 0) | (0x02 if overflow else 0)
    frame = encode_snd_iq(flags, seq, smeter, iq, last_gps_solution=gps[0], gps_seconds=gps[1], gps_nanoseconds=gps[2])
    decoded = decode_snd_frame(frame[3:])
    assert decoded.sequence == seq and decoded.flags == flags and decoded.adc_overflow == overflow
    assert decoded.rssi_dbm == pytest.approx(0.1 * smeter - 127)
    assert (decoded.last_gps_solution, decoded.gps_seconds, decoded.gps_nanoseconds) == gps
    np.testing.assert_array_equal(decoded.iq.real, iq[:, 0].astype(np.float32))
    np.testing.assert_array_equal(decoded.iq.imag, iq[:, 1].astype(np.float32))


def test_fake_server_rejects_unknown_mode():
    with pytest.raises(ValueError):
        FakeKiwiConfig(mode="nonsense")
