import dataclasses
import hashlib
import io
import json
import warnings
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import sigmf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from heimdall_pipeline.receivers import DEFAULT_RECEIVERS
from heimdall_pipeline.capture import Capture, GpsTimestamp
from heimdall_pipeline.storage.iq_format import (
    CaptureIntegrityError,
    capture_from_stored,
    decode_npy,
    encode_capture,
)

RECEIVER = DEFAULT_RECEIVERS[0]  # f5len
KEY = "sessions/s1/websdr_f5len.npy"
START = datetime(2026, 11, 23, 13, 26, 1, 123456, tzinfo=timezone.utc)


def make_capture(samples=None, **overrides):
    if samples is None:
        rng = np.random.default_rng(7)
        samples = (rng.standard_normal(1000) + 1j * rng.standard_normal(1000)).astype(np.complex64)
    fields = dict(
        session_key="s20261123t1326z-7f3a9c",
        receiver_id=RECEIVER.id,
        samples=samples,
        sample_rate_hz=12001.135,
        center_frequency_hz=7_100_000.0,
        start_time=START,
        source_kind="simulated",
        gps_timestamps=(GpsTimestamp(0, 1_400_000_000, 123, True), GpsTimestamp(512, 1_400_000_000, 42_789_000, False)),
        details={"nominal_sample_rate_hz": 12000.0, "dropped_frames": 0, "server": "v1.2"},
        ground_truth={"transmitter": {"latitude": 48.1, "longitude": 5.2}, "snr_db": 14.5},
    )
    fields.update(overrides)
    return Capture(**fields)


def encode(capture=None):
    return encode_capture(capture or make_capture(), RECEIVER, dataset_name="websdr_f5len.npy")


def assert_same_capture(a: Capture, b: Capture):
    for field in dataclasses.fields(Capture):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if field.name == "samples":
            assert y.dtype == np.dtype("<c8") and y.ndim == 1
            # bit-exact, including NaN payloads and signed zeros
            assert np.array_equal(np.asarray(x, dtype="<c8").view("<u8"), y.view("<u8"))
        else:
            assert x == y, field.name


def test_round_trip_exact():
    capture = make_capture()
    encoded = encode(capture)
    assert_same_capture(capture, capture_from_stored(encoded.npy_bytes, encoded.metadata_json, key_for_errors=KEY))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    samples=hnp.arrays(np.complex64, st.integers(0, 300), elements=st.complex_numbers(width=64, allow_nan=True)),
    rate=st.floats(1000, 2.4e6, allow_nan=False),
    frequency=st.floats(1, 6e9, allow_nan=False),
    micros=st.integers(0, 10**6 - 1),
)
def test_round_trip_property(samples, rate, frequency, micros):
    capture = make_capture(
        samples=samples, sample_rate_hz=rate, center_frequency_hz=frequency, start_time=START.replace(microsecond=micros)
    )
    encoded = encode(capture)
    assert_same_capture(capture, capture_from_stored(encoded.npy_bytes, encoded.metadata_json, key_for_errors=KEY))


def test_npy_bytes_are_a_plain_numpy_file():
    capture = make_capture()
    encoded = encode(capture)
    loaded = np.load(io.BytesIO(encoded.npy_bytes), allow_pickle=False)
    assert loaded.dtype.str == "<c8" and loaded.shape == (1000,)
    assert np.array_equal(loaded, capture.samples)
    assert encoded.sha256 == hashlib.sha256(encoded.npy_bytes).hexdigest()
    assert encoded.header_bytes == len(encoded.npy_bytes) - 1000 * 8
    raw = np.frombuffer(encoded.npy_bytes, dtype="<c8", offset=encoded.header_bytes)
    assert np.array_equal(raw, capture.samples)


def test_upload_stream_is_the_npy_file_without_a_joined_copy():
    capture = make_capture()
    encoded = encode(capture)
    stream = encoded.npy_stream()
    assert stream.size == encoded.npy_size == len(encoded.npy_bytes)
    assert stream.read() == encoded.npy_bytes
    assert stream.sha256().hex() == encoded.sha256
    assert np.shares_memory(encoded.samples, capture.samples)  # already complex64: no copy


def test_captures_read_back_are_read_only():
    encoded = encode()
    samples = decode_npy(encoded.npy_bytes, expected_sha256=encoded.sha256, key_for_errors=KEY)
    assert not samples.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        samples[0] = 0


def test_encoding_is_deterministic():
    a, b = encode(), encode()
    assert a.npy_bytes == b.npy_bytes and a.metadata_json == b.metadata_json
    text = a.metadata_json.decode("utf-8")
    assert json.loads(text) == a.metadata
    # sorted keys, compact separators, one line ending in a newline
    assert text == json.dumps(a.metadata, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"


def test_metadata_required_fields():
    capture = make_capture()
    meta = encode(capture).metadata
    g, caps = meta["global"], meta["captures"]
    assert g["core:datatype"] == "cf32_le"
    assert g["core:sample_rate"] == 12001.135
    assert g["core:version"] == sigmf.__specification__
    assert g["core:dataset"] == "websdr_f5len.npy"
    assert g["core:num_channels"] == 1
    assert g["core:recorder"] and g["core:description"]
    assert g["core:geolocation"] == {"type": "Point", "coordinates": [1.4, 43.5, 150.0]}  # lon, lat, alt
    assert {"name": "heimdall", "version": "1.0.0", "optional": True} in g["core:extensions"]
    assert "core:header_bytes" not in g  # a captures-segment field
    assert len(caps) == 1
    seg = caps[0]
    assert seg["core:sample_start"] == 0
    assert seg["core:frequency"] == 7_100_000.0
    assert seg["core:datetime"] == "2026-11-23T13:26:01.123456Z"
    assert seg["core:header_bytes"] == encode(capture).header_bytes
    assert meta["annotations"] == []
    assert g["heimdall:session_key"] == capture.session_key
    assert g["heimdall:receiver_id"] == "f5len"
    assert g["heimdall:receiver_name"] == "F5LEN"
    assert g["heimdall:source_kind"] == "simulated"
    assert g["heimdall:samples"] == 1000
    assert g["heimdall:sha256"] == encode(capture).sha256
    assert g["heimdall:sample_rate_nominal_hz"] == 12000.0
    assert g["heimdall:sample_rate_actual_hz"] == 12001.135
    assert g["heimdall:duration_s"] == pytest.approx(1000 / 12001.135)
    assert g["heimdall:gps_timestamps"] == [[0, 1_400_000_000, 123, True, None],
                                            [512, 1_400_000_000, 42_789_000, False, None]]
    assert g["heimdall:power_unit"] == "dBm" and g["heimdall:calibration"] is None
    assert g["heimdall:details"]["server"] == "v1.2"
    assert g["heimdall:ground_truth"]["snr_db"] == 14.5
    assert g["heimdall:format_version"] == 1


def test_no_ground_truth_field_for_real_captures():
    meta = encode(make_capture(ground_truth=None, source_kind="kiwisdr")).metadata
    assert "heimdall:ground_truth" not in meta["global"]


def test_sigmf_validation_passes():
    encoded = encode()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. undeclared extension namespace warnings
        sigmf.SigMFFile(metadata=encoded.metadata).validate()
        sigmf.SigMFFile(metadata=encoded.metadata_json.decode()).validate()


KIWI_DETAILS = {
    "sequence_gaps": [{"sample_index": 1536, "sample_count": 1024, "after_sequence": 144, "missing_frames": 2}],
    "retune": {"handling": "skipped", "settle_s": 1.75, "skipped_samples": 21504},
}


def kiwi_capture(**overrides):
    fields = dict(source_kind="kiwisdr", ground_truth=None, power_unit="dBFS",
                  calibration={"offset_db": -71.25, "spread_db": 0.12, "frames": 40},
                  gps_timestamps=(GpsTimestamp(0, 345600, 0, True, 0), GpsTimestamp(512, 345600, 42_663_000, True, 3),
                                  GpsTimestamp(1024, 0, 0, False, 255)),
                  details=KIWI_DETAILS)
    fields.update(overrides)
    return make_capture(samples=np.zeros(6000, np.complex64), **fields)


def test_units_calibration_and_fix_ages_round_trip():
    capture = kiwi_capture()
    encoded = encode(capture)
    g = encoded.metadata["global"]
    assert g["heimdall:power_unit"] == "dBFS"
    assert g["heimdall:calibration"] == {"offset_db": -71.25, "spread_db": 0.12, "frames": 40}
    assert [row[4] for row in g["heimdall:gps_timestamps"]] == [0, 3, 255]
    assert_same_capture(capture, capture_from_stored(encoded.npy_bytes, encoded.metadata_json, key_for_errors=KEY))


def test_uncalibrated_dbfs_capture_says_so():
    encoded = encode(kiwi_capture(calibration=None))
    assert encoded.metadata["global"]["heimdall:power_unit"] == "dBFS"
    assert encoded.metadata["global"]["heimdall:calibration"] is None


def test_stored_objects_without_units_or_fix_ages_still_read():
    encoded = encode()
    meta = json.loads(encoded.metadata_json)
    del meta["global"]["heimdall:power_unit"], meta["global"]["heimdall:calibration"]
    meta["global"]["heimdall:gps_timestamps"] = [row[:4] for row in meta["global"]["heimdall:gps_timestamps"]]
    back = capture_from_stored(encoded.npy_bytes, json.dumps(meta), key_for_errors=KEY)
    assert back.power_unit == "dBm" and back.calibration is None
    assert [t.fix_age_s for t in back.gps_timestamps] == [None, None]


def test_sequence_gaps_are_sigmf_annotations():
    meta = encode(kiwi_capture()).metadata
    [gap] = meta["annotations"]
    assert gap["core:sample_start"] == 1536 and gap["core:sample_count"] == 1024
    assert gap["core:label"] == "sequence gap" and gap["heimdall:missing_frames"] == 2
    assert "zero-filled" in gap["core:comment"]
    assert meta["global"]["heimdall:retune"] == KIWI_DETAILS["retune"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sigmf.SigMFFile(metadata=meta).validate()


def test_kept_retune_region_is_annotated():
    details = {"sequence_gaps": KIWI_DETAILS["sequence_gaps"],
               "retune": {"handling": "marked", "settle_s": 0.0, "skipped_samples": 0, "sample_count": 21002}}
    meta = encode(kiwi_capture(details=details)).metadata
    retune, gap = meta["annotations"]  # sorted by sample_start
    assert retune["core:label"] == "re-tune" and retune["core:sample_start"] == 0
    assert retune["core:sample_count"] == 6000  # clipped to the capture
    assert gap["core:label"] == "sequence gap"
    assert meta["global"]["heimdall:retune"]["handling"] == "marked"
    sigmf.SigMFFile(metadata=meta).validate()


def test_sigmf_validation_can_fail():
    meta = json.loads(encode().metadata_json)
    meta["captures"][0]["core:header_bytes"] = -1
    with pytest.raises(Exception):
        sigmf.SigMFFile(metadata=meta).validate()


def test_sigmf_reads_npy_as_non_conforming_dataset_file(tmp_path):
    capture = make_capture()
    encoded = encode(capture)
    (tmp_path / "websdr_f5len.npy").write_bytes(encoded.npy_bytes)
    f = sigmf.SigMFFile(metadata=encoded.metadata, data_file=tmp_path / "websdr_f5len.npy")
    assert f.sample_count == 1000
    assert np.array_equal(f.read_samples().view("<u8"), capture.samples.view("<u8"))
    assert np.array_equal(f[:], capture.samples)


def test_sigmf_fromfile_with_meta_next_to_npy(tmp_path):
    capture = make_capture()
    encoded = encode(capture)
    (tmp_path / "websdr_f5len.npy").write_bytes(encoded.npy_bytes)
    (tmp_path / "websdr_f5len.sigmf-meta").write_bytes(encoded.metadata_json)
    f = sigmf.sigmffile.fromfile(tmp_path / "websdr_f5len.sigmf-meta")  # verifies core:sha512
    f.validate()
    assert np.array_equal(f.read_samples(), capture.samples)


def test_sigmf_fromfile_detects_corruption_via_sha512(tmp_path):
    encoded = encode()
    damaged = bytearray(encoded.npy_bytes)
    damaged[-1] ^= 0xFF
    (tmp_path / "websdr_f5len.npy").write_bytes(bytes(damaged))
    (tmp_path / "websdr_f5len.sigmf-meta").write_bytes(encoded.metadata_json)
    with pytest.raises(sigmf.error.SigMFFileError):
        sigmf.sigmffile.fromfile(tmp_path / "websdr_f5len.sigmf-meta")


def test_sigmf_reads_npy_from_memory_buffer():
    capture = make_capture()
    encoded = encode(capture)
    f = sigmf.SigMFFile(metadata=encoded.metadata)
    f.set_data_file(data_buffer=io.BytesIO(encoded.npy_bytes), offset=encoded.header_bytes)
    assert np.array_equal(f.read_samples(), capture.samples)


def test_sha256_mismatch_names_key_and_both_hashes():
    encoded = encode()
    damaged = bytearray(encoded.npy_bytes)
    damaged[-3] ^= 0x01
    with pytest.raises(CaptureIntegrityError) as info:
        decode_npy(bytes(damaged), expected_sha256=encoded.sha256, key_for_errors=KEY)
    message = str(info.value)
    assert KEY in message and encoded.sha256 in message and hashlib.sha256(bytes(damaged)).hexdigest() in message
    with pytest.raises(CaptureIntegrityError, match="sha256"):
        capture_from_stored(bytes(damaged), encoded.metadata_json, key_for_errors=KEY)


def test_integrity_error_is_value_error():
    assert issubclass(CaptureIntegrityError, ValueError)


@pytest.mark.parametrize("cut", [1, 8, 100])
def test_truncated_npy_refused(cut):
    encoded = encode()
    with pytest.raises(CaptureIntegrityError, match="truncated") as info:
        decode_npy(encoded.npy_bytes[:-cut], key_for_errors=KEY)
    assert KEY in str(info.value)


@pytest.mark.parametrize("length", [0, 5, 60])
def test_truncated_header_refused(length):
    with pytest.raises(CaptureIntegrityError, match=KEY):
        decode_npy(encode().npy_bytes[:length], key_for_errors=KEY)


def test_trailing_bytes_refused():
    with pytest.raises(CaptureIntegrityError, match="trailing"):
        decode_npy(encode().npy_bytes + b"\0" * 8, key_for_errors=KEY)


@pytest.mark.parametrize(
    "array",
    [
        np.zeros(10, dtype=np.complex128),
        np.zeros(10, dtype=np.float32),
        np.zeros(10, dtype=">c8"),
        np.zeros((5, 2), dtype=np.complex64),
        np.zeros((), dtype=np.complex64),
    ],
    ids=["complex128", "float32", "big-endian", "2-D", "0-D"],
)
def test_wrong_dtype_or_shape_refused(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    with pytest.raises(CaptureIntegrityError, match=KEY):
        decode_npy(buffer.getvalue(), key_for_errors=KEY)


def test_pickled_object_array_refused():
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CaptureIntegrityError):
        decode_npy(buffer.getvalue(), key_for_errors=KEY)


def test_metadata_sample_count_mismatch_refused():
    encoded = encode()
    meta = json.loads(encoded.metadata_json)
    meta["global"]["heimdall:samples"] = 999
    with pytest.raises(CaptureIntegrityError, match="samples"):
        capture_from_stored(encoded.npy_bytes, json.dumps(meta), key_for_errors=KEY)


def test_encode_refuses_bad_captures():
    with pytest.raises(ValueError, match="complex64"):
        encode(make_capture(samples=np.zeros(4, dtype=np.complex128)))
    with pytest.raises(ValueError, match="1-D"):
        encode(make_capture(samples=np.zeros((2, 2), dtype=np.complex64)))
    with pytest.raises(ValueError, match="naive"):
        encode(make_capture(start_time=datetime(2026, 1, 1)))
    with pytest.raises(ValueError, match="receiver"):
        encode_capture(make_capture(), DEFAULT_RECEIVERS[1], dataset_name="websdr_ph0m.npy")
    with pytest.raises(ValueError, match="JSON"):
        encode(make_capture(details={"bad": float("nan")}))
    with pytest.raises(ValueError, match="dataset_name"):
        encode_capture(make_capture(), RECEIVER, dataset_name="../x.npy")


def test_non_utc_start_time_is_stored_as_utc():
    cet = timezone(timedelta(hours=1))
    capture = make_capture(start_time=START.astimezone(cet))
    encoded = encode(capture)
    assert encoded.metadata["captures"][0]["core:datetime"].endswith("Z")
    back = capture_from_stored(encoded.npy_bytes, encoded.metadata_json, key_for_errors=KEY)
    assert back.start_time == START and back.start_time.utcoffset() == timedelta(0)


def test_power_unit_and_calibration_round_trip():
    capture = make_capture(source_kind="kiwisdr", power_unit="dBFS",
                           calibration={"offset_db": -21.5, "spread_db": 0.3, "frames": 40})
    encoded = encode(capture)
    assert_same_capture(capture, capture_from_stored(encoded.npy_bytes, encoded.metadata_json, key_for_errors=KEY))


@pytest.mark.parametrize("source_kind, details, unit", [
    ("kiwisdr", {"power_calibrated": False}, "dBFS"),  # raw full-scale samples
    ("kiwisdr", {"power_calibrated": True}, "dBm"),  # scaled to the RSSI, in mW
    ("simulated", {}, "dBm"),
])
def test_objects_stored_before_explicit_units_get_the_unit_they_were_in(source_kind, details, unit):
    encoded = encode(make_capture(source_kind=source_kind, details=details))
    metadata = json.loads(encoded.metadata_json)
    for name in ("power_unit", "calibration"):
        metadata["global"].pop(f"heimdall:{name}")
    stored = capture_from_stored(encoded.npy_bytes, json.dumps(metadata), key_for_errors=KEY)
    assert stored.power_unit == unit and stored.calibration is None
