"""kiwirecorder --kiwi-wav IQ files: decode, encode back bit for bit, a named error per bad file."""

import struct
from datetime import datetime, timezone

import numpy as np
import pytest

from heimdall_pipeline.capture import GpsTimestamp
from heimdall_pipeline.storage.kiwi_wav import (
    FRAME_SAMPLES,
    BadFileNameError,
    KiwiWavError,
    KiwiWavName,
    NoGnssError,
    NotRiffWaveError,
    TruncatedChunkError,
    UnsupportedChannelCountError,
    UnsupportedEncodingError,
    UnsupportedSampleWidthError,
    decode_kiwi_wav,
    encode_kiwi_wav,
    parse_file_name,
    read_kiwi_wav,
    samples_to_int16,
    write_kiwi_wav,
    write_recording,
)
from heimdall_pipeline_tests.data import DCF77_DIR

NAME = "20200813T065220Z_77500_HB9ODP_iq.wav"


def synthetic_file(n_frames=6, seed=1):
    rng = np.random.default_rng(seed)
    n = n_frames * FRAME_SAMPLES - 100  # a short last frame
    ints = rng.integers(-32768, 32768, size=(n, 2)).astype(np.int16)
    ints[0] = (-32768, 32767)  # the extremes survive
    samples = (ints[:, 0].astype(np.float32) / 32768 + 1j * ints[:, 1].astype(np.float32) / 32768).astype(np.complex64)
    stamps = [GpsTimestamp(0, 0, 0, False, 0)]  # all-zero first header, as kiwirecorder writes
    for k in range(1, n_frames):
        age = 254 if k == 3 else k % 2
        stamps.append(GpsTimestamp(k * FRAME_SAMPLES, 370358, 42_662_812 * k, age != 254, age))
    return samples, ints, stamps, encode_kiwi_wav(samples, stamps, 12001)


def test_round_trip_is_bit_for_bit(tmp_path):
    samples, ints, stamps, data = synthetic_file()
    rec = decode_kiwi_wav(data, NAME)
    assert rec.samples.dtype == np.complex64
    assert np.array_equal(samples_to_int16(rec.samples), ints)
    assert np.array_equal(rec.samples.view(np.uint64), samples.view(np.uint64))
    assert rec.timestamps == tuple(stamps)
    assert [t.has_solution for t in rec.timestamps] == [False, True, True, False, True, True]
    assert rec.header_rate_hz == 12001
    assert rec.name == KiwiWavName(datetime(2020, 8, 13, 6, 52, 20, tzinfo=timezone.utc), 77500.0, "HB9ODP")
    path = write_recording(tmp_path, rec)
    assert path.name == NAME and path.read_bytes() == data
    assert not list(tmp_path.glob("*.partial"))


def test_frames_without_timestamp_get_a_no_gnss_header():
    samples, _, stamps, _ = synthetic_file()
    rec = decode_kiwi_wav(encode_kiwi_wav(samples, [stamps[2]], 12001), NAME)
    assert [t.has_solution for t in rec.timestamps] == [False, False, True, False, False, False]
    assert rec.timestamps[0].fix_age_s == 255


def test_export_refuses_samples_beyond_full_scale_and_off_frame_timestamps(tmp_path):
    with pytest.raises(ValueError, match="full scale"):
        encode_kiwi_wav(np.array([1.5 + 0j], dtype=np.complex64), [], 12001)
    with pytest.raises(ValueError, match="frame start"):
        encode_kiwi_wav(np.zeros(1024, np.complex64), [GpsTimestamp(3, 1, 2, True, 0)], 12001)
    name = parse_file_name(NAME)
    with pytest.raises(ValueError):
        write_kiwi_wav(tmp_path, name, np.array([np.nan], dtype=np.complex64), [], 12001)
    assert list(tmp_path.iterdir()) == []


def _patched_fmt(data, **fields):
    tag, channels, rate, byte_rate, align, bits = struct.unpack_from("<HHIIHH", data, 20)
    values = dict(tag=tag, channels=channels, rate=rate, byte_rate=byte_rate, align=align, bits=bits) | fields
    out = bytearray(data)
    struct.pack_into("<HHIIHH", out, 20, *values.values())
    return bytes(out)


def _bad_files():
    samples, _, stamps, good = synthetic_file()
    no_gnss = encode_kiwi_wav(samples, [GpsTimestamp(0, 0, 0, False, 0), GpsTimestamp(512, 370358, 5, False, 255)], 12001)
    return {
        "not riff": (b"OggS" + good[4:], NotRiffWaveError),
        "empty": (b"", NotRiffWaveError),
        "mono": (_patched_fmt(good, channels=1), UnsupportedChannelCountError),
        "8 bit": (_patched_fmt(good, bits=8), UnsupportedSampleWidthError),
        "float": (_patched_fmt(good, tag=3), UnsupportedEncodingError),
        "truncated data": (good[:-10], TruncatedChunkError),
        "truncated header": (good + b"kiw", TruncatedChunkError),
        "no gnss": (no_gnss, NoGnssError),
    }


@pytest.mark.parametrize("case", list(_bad_files()))
def test_each_bad_file_gets_its_named_error(case):
    data, error = _bad_files()[case]
    with pytest.raises(error) as info:
        decode_kiwi_wav(data, NAME)
    assert isinstance(info.value, KiwiWavError) and info.value.file_name == NAME
    assert NAME in str(info.value)


@pytest.mark.parametrize("name", ["foo.wav", "20200813T065220Z_iq.wav", "20201313T065220Z_77500_X_iq.wav",
                                  "20200813T065220Z_0_X_iq.wav", "20200813T065220Z_77500_X.wav"])
def test_bad_file_name(name):
    _, _, _, data = synthetic_file()
    with pytest.raises(BadFileNameError) as info:
        decode_kiwi_wav(data, name)
    assert info.value.file_name == name


def test_file_name_round_trip():
    name = parse_file_name("/some/dir/20231101T000102Z_7100000_my_kiwi_iq.wav")
    assert name.receiver == "my_kiwi" and name.frequency_hz == 7.1e6
    assert name.start_utc == datetime(2023, 11, 1, 0, 1, 2, tzinfo=timezone.utc)
    assert name.file_name == "20231101T000102Z_7100000_my_kiwi_iq.wav"


@pytest.mark.parametrize("receiver,n_samples", [("HB9ODP", 360960), ("JO51xl", 354816), ("pa0rdt", 356352)])
def test_real_dcf77_files(receiver, n_samples):
    path = DCF77_DIR / f"20200813T065220Z_77500_{receiver}_iq.wav"
    rec = read_kiwi_wav(path)
    assert rec.name.receiver == receiver and rec.name.frequency_hz == 77500.0
    assert rec.header_rate_hz == 12001
    assert len(rec.samples) == n_samples and n_samples % FRAME_SAMPLES == 0
    assert len(rec.timestamps) == n_samples // FRAME_SAMPLES
    assert [t.sample_index for t in rec.timestamps] == list(range(0, n_samples, FRAME_SAMPLES))
    assert not rec.timestamps[0].has_solution  # the all-zero first header
    fresh = [t for t in rec.timestamps if t.has_solution and t.fix_age_s == 0]
    assert len(fresh) > 150
    # 2020-08-13 06:52:20 UTC is Thursday: 4 days + 24740 s into the GPS week, + 18 leap seconds
    assert all(370358 <= t.gps_seconds <= 370358 + 31 for t in fresh if t.sample_index > 2 * FRAME_SAMPLES)
    peak = float(np.max(np.abs(rec.samples.view(np.float32))))
    assert 0.0 < peak <= 1.0 and peak * 32768 == int(peak * 32768)  # int16 / 32768: full scale = 1.0
    assert path.read_bytes() == encode_kiwi_wav(rec.samples, rec.timestamps, rec.header_rate_hz)


def test_recording_as_a_capture_keeps_its_gnss_time():
    from heimdall_pipeline.storage.kiwi_wav import recording_capture

    rec = read_kiwi_wav(DCF77_DIR / "20200813T065220Z_77500_JO51xl_iq.wav")
    cap = recording_capture(rec, "s-import", "jo51xl")
    assert cap.source_kind == "recording" and cap.power_unit == "dBFS"
    assert cap.center_frequency_hz == 77500.0 and cap.samples is rec.samples
    assert 12001.0 < cap.sample_rate_hz < 12001.2  # the measured rate, not the header's 12001
    assert cap.gps_timestamps == rec.timestamps
    assert cap.start_time.replace(microsecond=0) == datetime(2020, 8, 13, 6, 52, 20, tzinfo=timezone.utc)
    assert cap.details["header_sample_rate_hz"] == 12001 and cap.details["time_model"]["fresh_fixes"] > 150


def test_recording_without_fresh_fixes_keeps_the_header_rate():
    from heimdall_pipeline.storage.kiwi_wav import recording_capture

    samples, _, _, _ = synthetic_file()
    stale = [GpsTimestamp(k * FRAME_SAMPLES, 370358, k * 42_662_812, True, 2) for k in range(6)]
    rec = decode_kiwi_wav(encode_kiwi_wav(samples, stale, 12001), NAME)
    cap = recording_capture(rec, "s", "hb9odp")
    assert cap.sample_rate_hz == 12001.0 and cap.start_time == rec.name.start_utc
    assert "0 fresh GNSS fix(es)" in cap.details["untimed_reason"]
