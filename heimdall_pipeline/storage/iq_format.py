"""How one capture is stored: a NumPy .npy file of complex64 samples plus SigMF metadata JSON.

Pure code: no Dagster, no boto3, no database.

The .npy file is a SigMF *Non-Conforming Dataset*: its name does not end in `.sigmf-data` and it
starts with a NumPy header. The metadata therefore names it in `global.core:dataset` and gives the
header length in the capture segment's `core:header_bytes` (the SigMF spec puts `header_bytes` in
the Captures scope, not in Global). With those two fields the `sigmf` package (1.14, spec 1.2.6)
reads the samples of the .npy directly:

* `sigmf.SigMFFile(metadata=meta_dict, data_file="/dir/websdr_x.npy")` detects the NCD
  (non-zero header_bytes + core:dataset) and skips the header; `read_samples()` returns the
  samples bit-identical;
* `sigmf.SigMFFile(metadata=...)` then `set_data_file(data_buffer=io.BytesIO(npy_bytes),
  offset=header_bytes)` does the same from memory;
* `sigmf.sigmffile.fromfile("/dir/websdr_x.sigmf-meta")` works when the metadata JSON is saved
  next to the .npy under a `.sigmf-meta` name (our S3 object is called `..._metadata.json`, which
  `fromfile` would not look for); it resolves the data file from `core:dataset` and verifies
  `core:sha512`.

Known sigmf 1.14 defect: `read_samples_in_capture(0)` counts `core:header_bytes` twice for an NCD
(once in get_capture_byte_boundaries, once as data_offset), so it skips header_bytes/8 real
samples at the start. Use `read_samples()` or slicing (`sigmf_file[:]`), which are exact.

Units: `heimdall:power_unit` is the scale of the samples ("dBm": mean|x|^2 in mW; "dBFS": the
receiver's ADC full scale, as a KiwiSDR sends them) and `heimdall:calibration` the dBFS -> dBm
calibration of such a capture ({"offset_db", "spread_db", "frames"}) or null when there is none.

Annotations (SigMF `annotations`): every sequence gap of a live capture, zero-filled so that
sample index = time (label "sequence gap"); and, when a KiwiSDR capture kept the samples from
before the server's re-tune, the region that may contain it (label "re-tune").
`heimdall:retune` says how the re-tune was handled ("skipped": the capture starts after it;
"marked": the annotated region may contain it).

Timing: a capture with GNSS timestamps gets its time model (dsp/timing.fit_time_model) in
`heimdall:time_model` (measured rate and spread, timing rms, knots; TimeModel.from_json reads it),
`core:datetime` of sample 0 to the nanosecond from it, and each fresh fix as an annotation (label
"gnss fix"). A capture that cannot be timed says why in `heimdall:untimed_reason`.

Audio: a demodulated audio capture (an OpenWebRX receiver: no IQ, no timestamps) is stored as a
.npy of real float32 samples (int16 / 32768, after the receiver's AGC) with `core:datatype`
"rf32_le" (a real-valued SigMF dataset), `heimdall:signal` "audio" (IQ captures say "iq") and
`heimdall:audio` (mode, dial frequency, passband, S-meter readings: how audio maps to RF and what
the level figure is). It is always untimed (`heimdall:untimed_reason` says why).

Integrity: `heimdall:sha256` is the SHA-256 of the whole .npy object (what the pipeline checks);
`core:sha512` is the SHA-512 of the same bytes (what SigMF tools check).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import math
from datetime import datetime, timezone
from typing import Any, Mapping

import numpy as np

from heimdall_pipeline.dsp.timing import TimeModel, UntimedCaptureError, fit_time_model, is_fresh
from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.capture import Capture, GpsTimestamp
from heimdall_pipeline.storage.buffers import BufferStream

SAMPLE_DTYPE = np.dtype("<c8")
SIGMF_DATATYPE = "cf32_le"
AUDIO_SAMPLE_DTYPE = np.dtype("<f4")
AUDIO_SIGMF_DATATYPE = "rf32_le"
DTYPE_OF_DATATYPE = {SIGMF_DATATYPE: SAMPLE_DTYPE, AUDIO_SIGMF_DATATYPE: AUDIO_SAMPLE_DTYPE}
HEIMDALL_NAMESPACE = "heimdall"
HEIMDALL_EXTENSION_VERSION = "1.0.0"
FORMAT_VERSION = 1
RECORDER = "heimdall-pipeline"


@functools.cache
def sigmf_version() -> str:
    """The SigMF specification version written into metadata (sigmf, with jsonschema, is loaded
    when the first capture is encoded, not by the code location)."""
    import sigmf

    return sigmf.__specification__


class CaptureIntegrityError(ValueError):
    """A stored object is not what its metadata says it is (hash, dtype, shape or length)."""


@dataclasses.dataclass(frozen=True)
class EncodedCapture:
    """A capture ready to store: the .npy object is npy_header followed by the samples' own
    memory (never joined into one copy unless npy_bytes is asked for)."""

    npy_header: bytes
    samples: np.ndarray  # 1-D C-contiguous little-endian complex64 (float32 for audio)
    sha256: str
    metadata_json: bytes

    @property
    def metadata(self) -> dict[str, Any]:
        """The metadata exactly as a reader parses it back (parsed on demand: storing needs only the JSON)."""
        return json.loads(self.metadata_json)

    @property
    def header_bytes(self) -> int:
        return len(self.npy_header)

    @property
    def npy_size(self) -> int:
        return len(self.npy_header) + self.samples.nbytes

    def npy_stream(self) -> BufferStream:
        """The .npy object as a seekable stream over the header and the samples (no copy)."""
        return BufferStream(self.npy_header, self.samples)

    @property
    def npy_bytes(self) -> bytes:
        """The .npy object as one bytes object (a copy of the samples)."""
        return self.npy_header + self.samples.tobytes()


def _iso_utc(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"start_time {value!r} is naive; captures must carry a UTC-aware datetime")
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_iso_utc(text: str) -> datetime:
    """core:datetime with up to 9 fraction digits (a datetime keeps microseconds)."""
    if not text.endswith("Z"):
        raise ValueError(f"core:datetime {text!r} is not UTC (must end in 'Z')")
    whole, _, fraction = text[:-1].partition(".")
    return datetime.strptime(f"{whole}.{(fraction + '000000')[:6]}", "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc)


def capture_time_model(capture: Capture, nominal_sample_rate_hz: float) -> tuple[TimeModel | None, str | None]:
    """The capture's time model from its fresh GNSS fixes, or (None, why it cannot be timed)."""
    if capture.is_audio:
        return None, capture.audio_untimed_reason
    if not capture.gps_timestamps:
        return None, f"the {capture.source_kind} source gives no GNSS timestamps"
    try:
        return fit_time_model(capture.gps_timestamps, nominal_sample_rate_hz, capture.start_time,
                              len(capture.samples)), None
    except UntimedCaptureError as exc:
        return None, str(exc)


def time_model_of(metadata: Mapping[str, Any]) -> TimeModel | None:
    """The time model stored in a capture's SigMF metadata (None for untimed captures)."""
    stored = metadata["global"].get(f"{HEIMDALL_NAMESPACE}:time_model")
    return None if stored is None else TimeModel.from_json(stored)


def stored_timing(metadata: Mapping[str, Any]) -> tuple[tuple[GpsTimestamp, ...], TimeModel | None, str | None, int,
                                                        float, dict]:
    """What a capture's SigMF metadata says of its timing, without its samples: the frame tags,
    the time model (or the reason it has none), the sample count and rate, the source's details."""
    glob = metadata["global"]
    ns = HEIMDALL_NAMESPACE
    stamps = tuple(_gps_timestamp(row) for row in glob.get(f"{ns}:gps_timestamps", []))
    return (stamps, time_model_of(metadata), glob.get(f"{ns}:untimed_reason"), int(glob.get(f"{ns}:samples", 0)),
            float(glob["core:sample_rate"]), dict(glob.get(f"{ns}:details", {})))


def _fix_annotations(capture: Capture, model: TimeModel | None) -> list[dict[str, Any]]:
    if model is None:
        return []
    return [{"core:sample_start": int(t.sample_index), "core:sample_count": 1, "core:label": "gnss fix",
             "core:comment": f"GPS {t.gps_seconds}.{t.gps_nanoseconds:09d} s of week (fresh fix)"}
            for t in capture.gps_timestamps if is_fresh(t) and 0 <= t.sample_index < len(capture.samples)]


def _dumps(metadata: Mapping[str, Any]) -> bytes:
    # Compact: json's C encoder serves only unindented output; indented, a timed capture's ~50 KB
    # of GNSS tags and fix annotations took 2 ms of the GIL per capture (bench io_manager_write).
    try:
        text = json.dumps(metadata, sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"capture metadata is not strict JSON (details/ground_truth must be JSON values): {exc}") from exc
    return (text + "\n").encode("utf-8")


def _npy_layout(npy_bytes: bytes, key: str, sample_dtype: np.dtype = SAMPLE_DTYPE) -> tuple[int, int]:
    """Checks an .npy byte string; returns (header_bytes, sample_count) or raises CaptureIntegrityError."""
    where = f"'{key}'" if key else "npy object"
    stream = io.BytesIO(npy_bytes)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version in ((2, 0), (3, 0)):
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:  # pragma: no cover - numpy would have refused already
            raise ValueError(f"unsupported .npy version {version}")
    except Exception as exc:  # numpy raises ValueError/EOFError/SyntaxError on damaged headers
        raise CaptureIntegrityError(f"{where}: not a readable .npy file ({exc})") from exc
    header_bytes = stream.tell()
    if dtype != sample_dtype:
        raise CaptureIntegrityError(f"{where}: dtype is {dtype.str}, expected {sample_dtype.str} "
                             f"({'complex64' if sample_dtype == SAMPLE_DTYPE else 'float32'} little-endian)")
    if len(shape) != 1:
        raise CaptureIntegrityError(f"{where}: shape is {shape}, expected a 1-D array")
    count = int(shape[0])
    expected_len = header_bytes + count * sample_dtype.itemsize
    if len(npy_bytes) < expected_len:
        raise CaptureIntegrityError(
            f"{where}: truncated: {len(npy_bytes)} bytes but header declares {count} samples ({expected_len} bytes)"
        )
    if len(npy_bytes) > expected_len:
        raise CaptureIntegrityError(
            f"{where}: {len(npy_bytes) - expected_len} unexpected trailing bytes after {count} samples"
        )
    return header_bytes, count


def _annotations(details: Mapping[str, Any], count: int) -> list[dict[str, Any]]:
    """SigMF annotations of the stored samples: zero-filled sequence gaps and a kept re-tune region."""
    ns = HEIMDALL_NAMESPACE
    out: list[dict[str, Any]] = []
    for gap in details.get("sequence_gaps", []):
        length = int(gap.get("sample_count", 0))
        if length > 0:
            out.append({
                "core:sample_start": int(gap["sample_index"]),
                "core:sample_count": length,
                "core:label": "sequence gap",
                "core:comment": f"{gap['missing_frames']} frame(s) lost after sequence {gap['after_sequence']}; "
                                "zero-filled so that sample index = time",
                f"{ns}:missing_frames": int(gap["missing_frames"]),
            })
    retune = details.get("retune") or {}
    if retune.get("handling") == "marked" and min(int(retune.get("sample_count", 0)), count) > 0:
        out.append({
            "core:sample_start": 0,
            "core:sample_count": min(int(retune["sample_count"]), count),
            "core:label": "re-tune",
            "core:comment": "the KiwiSDR sets the frequency again about 1.5 s after the first tune "
                            "(IQ phase-rotation workaround): these samples may contain that step",
        })
    return sorted(out, key=lambda a: a["core:sample_start"])


def encode_capture(
    capture: Capture,
    receiver: Receiver,
    *,
    dataset_name: str,
    nominal_sample_rate_hz: float | None = None,
) -> EncodedCapture:
    """Serialises a capture to .npy bytes and SigMF metadata.

    dataset_name: file name of the .npy object (e.g. "websdr_f5len.npy"), written to core:dataset.
    nominal_sample_rate_hz: the requested rate (KiwiSDR: 12000 while the true rate is e.g.
    12001.135); defaults to capture.details["nominal_sample_rate_hz"], else the actual rate.
    """
    if capture.receiver_id != receiver.id:
        raise ValueError(f"capture is from receiver {capture.receiver_id!r} but receiver {receiver.id!r} was given")
    if not dataset_name or "/" in dataset_name or "\\" in dataset_name:
        raise ValueError(f"dataset_name {dataset_name!r} must be a bare file name")
    samples = np.asarray(capture.samples)
    sample_dtype, datatype = ((AUDIO_SAMPLE_DTYPE, AUDIO_SIGMF_DATATYPE) if capture.is_audio
                              else (SAMPLE_DTYPE, SIGMF_DATATYPE))
    if capture.is_audio and (samples.dtype.kind != "f" or samples.dtype.itemsize != AUDIO_SAMPLE_DTYPE.itemsize):
        raise ValueError(f"audio capture samples must be real float32, got {samples.dtype}")
    if not capture.is_audio and (samples.dtype.kind != "c" or samples.dtype.itemsize != SAMPLE_DTYPE.itemsize):
        raise ValueError(f"capture samples must be complex64, got {samples.dtype}")
    if samples.ndim != 1:
        raise ValueError(f"capture samples must be 1-D, got shape {samples.shape}")
    rate = float(capture.sample_rate_hz)
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"sample_rate_hz {capture.sample_rate_hz!r} must be a positive finite number")
    frequency = float(capture.center_frequency_hz)
    if not math.isfinite(frequency):
        raise ValueError(f"center_frequency_hz {capture.center_frequency_hz!r} must be finite")
    if nominal_sample_rate_hz is None:
        nominal_sample_rate_hz = float(capture.details.get("nominal_sample_rate_hz", rate))
    start_text = _iso_utc(capture.start_time)  # refuses a naive start before it anchors the time model
    model, untimed_reason = capture_time_model(capture, float(nominal_sample_rate_hz))

    samples = np.ascontiguousarray(samples, dtype=sample_dtype)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(samples))
    npy_header = header.getvalue()  # what np.save writes before the data
    header_bytes, count = len(npy_header), len(samples)
    sha256, sha512 = hashlib.sha256(npy_header), hashlib.sha512(npy_header)
    for digest in (sha256, sha512):
        digest.update(memoryview(samples).cast("B"))
    sha256, sha512 = sha256.hexdigest(), sha512.hexdigest()

    geolocation = {
        "type": "Point",
        "coordinates": [float(receiver.longitude), float(receiver.latitude), float(receiver.altitude_m)],
    }
    ns = HEIMDALL_NAMESPACE
    global_info: dict[str, Any] = {
        "core:datatype": datatype,
        "core:sample_rate": rate,
        "core:version": sigmf_version(),
        "core:dataset": dataset_name,
        "core:num_channels": 1,
        "core:sha512": sha512,
        "core:recorder": f"{RECORDER} ({capture.source_kind})",
        "core:description": (
            f"Session {capture.session_key}: receiver {receiver.name} ({receiver.location_name}), "
            f"{frequency:.0f} Hz, {count} {'audio ' if capture.is_audio else ''}samples at {rate:g} Hz"
        ),
        "core:geolocation": geolocation,
        "core:extensions": [{"name": ns, "version": HEIMDALL_EXTENSION_VERSION, "optional": True}],
        f"{ns}:format_version": FORMAT_VERSION,
        f"{ns}:session_key": capture.session_key,
        f"{ns}:receiver_id": receiver.id,
        f"{ns}:receiver_name": receiver.name,
        f"{ns}:receiver_kind": receiver.kind,
        f"{ns}:location_name": receiver.location_name,
        f"{ns}:source_kind": capture.source_kind,
        f"{ns}:signal": "audio" if capture.is_audio else "iq",
        f"{ns}:samples": count,
        f"{ns}:sha256": sha256,
        f"{ns}:sample_rate_nominal_hz": float(nominal_sample_rate_hz),
        f"{ns}:sample_rate_actual_hz": rate,
        f"{ns}:duration_s": count / rate,
        # compact: one [sample_index, gps_seconds, gps_nanoseconds, has_solution, fix_age_s] row per tag
        f"{ns}:gps_timestamps": [
            [int(t.sample_index), int(t.gps_seconds), int(t.gps_nanoseconds), bool(t.has_solution),
             None if t.fix_age_s is None else int(t.fix_age_s)]
            for t in capture.gps_timestamps
        ],
        f"{ns}:power_unit": capture.power_unit,
        f"{ns}:calibration": capture.calibration,
        f"{ns}:details": dict(capture.details),
    }
    if model is not None:
        global_info[f"{ns}:time_model"] = model.to_json()
    else:
        global_info[f"{ns}:untimed_reason"] = untimed_reason
    if capture.ground_truth is not None:
        global_info[f"{ns}:ground_truth"] = capture.ground_truth
    if capture.is_audio:
        global_info[f"{ns}:audio"] = capture.audio
    if "retune" in capture.details:
        global_info[f"{ns}:retune"] = capture.details["retune"]
    metadata = {
        "global": global_info,
        "captures": [
            {
                "core:sample_start": 0,
                "core:frequency": frequency,
                "core:datetime": model.core_datetime if model is not None else start_text,
                "core:header_bytes": header_bytes,
                "core:geolocation": geolocation,
            }
        ],
        "annotations": sorted(_annotations(capture.details, count) + _fix_annotations(capture, model),
                              key=lambda a: a["core:sample_start"]),
    }
    return EncodedCapture(npy_header=npy_header, samples=samples, sha256=sha256, metadata_json=_dumps(metadata))


def decode_npy(npy_bytes: bytes, *, expected_sha256: str | None = None, key_for_errors: str = "",
               sample_dtype: np.dtype = SAMPLE_DTYPE) -> np.ndarray:
    """Returns the 1-D samples (complex64; float32 for audio) of an .npy object, after checking
    its hash and layout."""
    where = f"'{key_for_errors}'" if key_for_errors else "npy object"
    if expected_sha256 is not None:
        actual = hashlib.sha256(npy_bytes).hexdigest()
        if actual != str(expected_sha256).lower():
            raise CaptureIntegrityError(f"{where}: sha256 mismatch: metadata says {expected_sha256}, object has {actual}")
    header_bytes, count = _npy_layout(npy_bytes, key_for_errors, sample_dtype)
    # A read-only view over the downloaded bytes, not a copy: a stored capture is never modified,
    # and a copy would double the memory of every capture read back.
    return np.frombuffer(npy_bytes, dtype=sample_dtype, count=count, offset=header_bytes)


def _unit_before_explicit_units(glob: dict) -> str:
    """Objects stored before the unit was recorded: KiwiSDR samples not scaled by its RSSI were
    full-scale (dBFS); everything else was in mW (dBm)."""
    ns = HEIMDALL_NAMESPACE
    details = glob.get(f"{ns}:details") or {}
    if glob.get(f"{ns}:source_kind") == "kiwisdr" and not details.get("power_calibrated"):
        return "dBFS"
    return "dBm"


def _gps_timestamp(row: list[Any]) -> GpsTimestamp:
    """A stored [index, seconds, nanoseconds, has_solution(, fix_age_s)] row (older objects have 4)."""
    index, seconds, nanoseconds, has_solution, *rest = row
    fix_age = rest[0] if rest else None
    return GpsTimestamp(sample_index=int(index), gps_seconds=int(seconds), gps_nanoseconds=int(nanoseconds),
                        has_solution=bool(has_solution), fix_age_s=None if fix_age is None else int(fix_age))


def metadata_sha256(metadata_json: bytes | str) -> str | None:
    """The SHA-256 of the .npy that a stored SigMF metadata records (None if unreadable)."""
    try:
        return str(json.loads(metadata_json)["global"]["heimdall:sha256"])
    except (ValueError, KeyError, TypeError):
        return None


def capture_from_stored(npy_bytes: bytes, metadata_json: bytes | str, *, key_for_errors: str) -> Capture:
    """Inverse of encode_capture: rebuilds the Capture, verifying heimdall:sha256 and the sample count."""
    where = f"'{key_for_errors}'" if key_for_errors else "stored capture"
    ns = HEIMDALL_NAMESPACE
    try:
        metadata = json.loads(metadata_json)
        glob = metadata["global"]
        segment = metadata["captures"][0]
        expected_sha256 = glob[f"{ns}:sha256"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise CaptureIntegrityError(f"{where}: metadata is not Heimdall SigMF JSON ({exc!r})") from exc
    datatype = glob.get("core:datatype")
    if datatype not in DTYPE_OF_DATATYPE:
        raise CaptureIntegrityError(f"{where}: core:datatype is {datatype!r}, expected {SIGMF_DATATYPE} "
                             f"(IQ) or {AUDIO_SIGMF_DATATYPE} (audio)")
    audio = glob.get(f"{ns}:audio")
    if (datatype == AUDIO_SIGMF_DATATYPE) != (audio is not None):
        raise CaptureIntegrityError(f"{where}: core:datatype {datatype} does not match heimdall:audio "
                             f"({'missing' if audio is None else 'present'})")
    samples = decode_npy(npy_bytes, expected_sha256=expected_sha256, key_for_errors=key_for_errors,
                         sample_dtype=DTYPE_OF_DATATYPE[datatype])
    if glob.get(f"{ns}:samples") != len(samples):
        raise CaptureIntegrityError(f"{where}: metadata says {glob.get(f'{ns}:samples')} samples, object has {len(samples)}")
    if segment.get("core:header_bytes") != len(npy_bytes) - samples.nbytes:
        raise CaptureIntegrityError(
            f"{where}: core:header_bytes {segment.get('core:header_bytes')} does not match the .npy header "
            f"({len(npy_bytes) - samples.nbytes} bytes)"
        )
    try:
        return Capture(
            session_key=glob[f"{ns}:session_key"],
            receiver_id=glob[f"{ns}:receiver_id"],
            samples=samples,
            sample_rate_hz=float(glob["core:sample_rate"]),
            center_frequency_hz=float(segment["core:frequency"]),
            start_time=_parse_iso_utc(segment["core:datetime"]),
            source_kind=glob[f"{ns}:source_kind"],
            gps_timestamps=tuple(_gps_timestamp(row) for row in glob.get(f"{ns}:gps_timestamps", [])),
            power_unit=glob.get(f"{ns}:power_unit") or _unit_before_explicit_units(glob),
            calibration=glob.get(f"{ns}:calibration"),
            details=dict(glob.get(f"{ns}:details", {})),
            ground_truth=glob.get(f"{ns}:ground_truth"),
            audio=audio,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CaptureIntegrityError(f"{where}: metadata field missing or malformed ({exc!r})") from exc
