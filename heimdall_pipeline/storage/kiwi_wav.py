"""kiwirecorder ``--kiwi-wav`` IQ files: read them into samples and GNSS timestamps, write them back.

Format (as kiwirecorder writes it): a RIFF/WAVE file whose ``fmt `` chunk says PCM, 2 channels
(I, Q interleaved), 16 bits, and an integer header rate (12001: a rounding of the receiver's true
rate). The samples follow in ``data`` chunks of (normally) 512 IQ pairs, each preceded by a
10-byte ``kiwi`` chunk, little-endian ``<BBII``:

* seconds since the receiver's last GNSS fix (0 = this frame's timestamp comes from a fresh fix;
  254 and 255 = no GNSS time),
* a pad byte,
* GPS seconds of the week and nanoseconds: the GPS time of the frame's first sample (the week
  number is not in the file: anchor it with the UTC start time in the file name).

The first frames may carry an all-zero header (no timestamp yet). File names read
``YYYYMMDDTHHMMSSZ_<frequency Hz>_<receiver>_iq.wav``.

Samples are returned on the ADC's scale (int16 / 32768, i.e. dBFS), which is exact in complex64:
``samples_to_int16`` recovers the stored integers bit for bit. Pure: no Dagster, no storage.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import struct
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from heimdall_pipeline.dsp.timing import UntimedCaptureError, fit_time_model
from heimdall_pipeline.capture import UNTIMED_IMPORT_DETAIL, Capture, GpsTimestamp

FRAME_SAMPLES = 512  # IQ pairs per data chunk as kiwirecorder writes them
INT16_FULL_SCALE = 32768.0
KIWI_HEADER = struct.Struct("<BBII")  # fix age (s), pad, GPS seconds of week, nanoseconds
NO_GNSS_FIX_AGES = (254, 255)
NO_GNSS_FIX_AGE = 255  # what the writer puts in frames that have no timestamp
# kiwirecorder names a file after its --station; without one the receiver part is absent
FILE_NAME_PATTERN = re.compile(
    r"^(?P<start>\d{8}T\d{6}Z)_(?P<frequency>\d+(?:\.\d+)?)(?:_(?P<receiver>[^/\\]+))?_iq\.wav$"
)
_CHUNK = struct.Struct("<4sI")
_FMT = struct.Struct("<HHIIHH")  # format tag, channels, rate, byte rate, block align, bits
_PCM = 1


class KiwiWavError(ValueError):
    """A file is not a usable kiwirecorder IQ recording; ``file_name`` says which, the message why."""

    def __init__(self, file_name: str, problem: str):
        self.file_name = file_name
        self.problem = problem
        super().__init__(f"{file_name}: {problem}")


class NotRiffWaveError(KiwiWavError):
    """The file does not start with a RIFF/WAVE header."""


class UnsupportedEncodingError(KiwiWavError):
    """The ``fmt `` chunk is missing or says something other than integer PCM."""


class UnsupportedChannelCountError(KiwiWavError):
    """Not 2 channels (I and Q)."""


class UnsupportedSampleWidthError(KiwiWavError):
    """Not 16 bits per sample."""


class TruncatedChunkError(KiwiWavError):
    """A chunk is cut short (the file ends inside it) or has an impossible size."""


class NoGnssError(KiwiWavError):
    """Not one frame carries a GNSS timestamp: the recording cannot be placed in time."""


class BadFileNameError(KiwiWavError):
    """The name is not ``YYYYMMDDTHHMMSSZ_<frequency Hz>[_<receiver>]_iq.wav``."""


@dataclasses.dataclass(frozen=True)
class KiwiWavName:
    """What a kiwirecorder file name says: UTC start (to the second), frequency, receiver name
    ("" for kiwirecorder's default name without a station)."""

    start_utc: datetime
    frequency_hz: float
    receiver: str

    @property
    def file_name(self) -> str:
        freq = f"{self.frequency_hz:.0f}" if float(self.frequency_hz).is_integer() else f"{self.frequency_hz:g}"
        station = f"_{self.receiver}" if self.receiver else ""
        return f"{self.start_utc.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}_{freq}{station}_iq.wav"


def parse_file_name(file_name: str) -> KiwiWavName:
    """Split ``YYYYMMDDTHHMMSSZ_<frequency Hz>[_<receiver>]_iq.wav`` (directories are ignored)."""
    base = os.path.basename(str(file_name))
    match = FILE_NAME_PATTERN.fullmatch(base)
    if not match:
        raise BadFileNameError(base, "name is not YYYYMMDDTHHMMSSZ_<frequency Hz>[_<receiver>]_iq.wav")
    try:
        start = datetime.strptime(match["start"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError as exc:
        raise BadFileNameError(base, f"start time {match['start']!r} is not a valid date and time") from exc
    frequency = float(match["frequency"])
    if not frequency > 0:
        raise BadFileNameError(base, f"frequency {match['frequency']!r} Hz must be positive")
    return KiwiWavName(start_utc=start, frequency_hz=frequency, receiver=match["receiver"] or "")


@dataclasses.dataclass(frozen=True)
class KiwiWavRecording:
    """One kiwirecorder IQ file, decoded.

    samples: complex64 on the ADC's scale (int16 / 32768, full scale = 1.0, i.e. dBFS).
    timestamps: one GpsTimestamp per frame that has a ``kiwi`` chunk, at the frame's first sample.
        has_solution is False for all-zero headers and for fix ages 254/255; fix_age_s keeps the
        header byte as written (so the file can be written back bit for bit).
    header_rate_hz: the integer rate in the ``fmt `` chunk (not the true rate: see dsp/timing.py).
    name: what the file name says.
    """

    file_name: str
    samples: np.ndarray
    timestamps: tuple[GpsTimestamp, ...]
    header_rate_hz: int
    name: KiwiWavName

    @property
    def fresh_fix_count(self) -> int:
        return sum(1 for t in self.timestamps if t.has_solution and t.fix_age_s == 0)


def samples_to_int16(samples: np.ndarray) -> np.ndarray:
    """(n, 2) int16 I, Q from full-scale complex samples; exact for samples read from a file.

    Raises ValueError when a sample is not representable (beyond full scale or not finite): an
    export must scale its samples first, never clip them silently.
    """
    samples = np.asarray(samples, dtype=np.complex64)
    pairs = np.empty((samples.size, 2), dtype=np.float64)
    pairs[:, 0] = samples.real
    pairs[:, 1] = samples.imag
    pairs *= INT16_FULL_SCALE
    np.rint(pairs, out=pairs)
    if not np.all(np.isfinite(pairs)) or pairs.size and (pairs.min() < -32768 or pairs.max() > 32767):
        raise ValueError("samples exceed the int16 full scale (|I|, |Q| must be < 1.0); scale them before export")
    return pairs.astype(np.int16)


def _int16_to_samples(pairs: np.ndarray) -> np.ndarray:
    out = np.empty(pairs.shape[0], dtype=np.complex64)
    out.real = pairs[:, 0]
    out.imag = pairs[:, 1]
    out /= np.float32(INT16_FULL_SCALE)  # a power of two: exact
    return out


def _timestamp(sample_index: int, header: bytes) -> GpsTimestamp:
    age, _pad, seconds, nanoseconds = KIWI_HEADER.unpack(header)
    has_solution = age not in NO_GNSS_FIX_AGES and (seconds, nanoseconds) != (0, 0) and nanoseconds < 1_000_000_000
    return GpsTimestamp(sample_index=sample_index, gps_seconds=seconds, gps_nanoseconds=nanoseconds,
                        has_solution=has_solution, fix_age_s=age)


def decode_kiwi_wav(data: bytes, file_name: str, *, allow_untimed: bool = False) -> KiwiWavRecording:
    """Decode the bytes of a kiwirecorder IQ file; ``file_name`` gives the name facts and the errors' name.
    A file without any GNSS timestamp (a KiwiSDR without a fix: last_gps_solution 255) is refused
    with NoGnssError unless allow_untimed (``heimdall session import --untimed``: metrics only)."""
    name = parse_file_name(file_name)
    base = os.path.basename(str(file_name))
    view = memoryview(data)
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise NotRiffWaveError(base, "not a RIFF/WAVE file")
    header_rate: int | None = None
    chunks: list[np.ndarray] = []
    timestamps: list[GpsTimestamp] = []
    n_samples = 0
    pending: bytes | None = None  # the kiwi header waiting for its data chunk
    offset = 12
    while offset < len(data):
        if offset + _CHUNK.size > len(data):
            raise TruncatedChunkError(base, f"chunk header at byte {offset} is cut short by the end of the file")
        chunk_id, size = _CHUNK.unpack_from(data, offset)
        body_start = offset + _CHUNK.size
        if body_start + size > len(data):
            raise TruncatedChunkError(
                base, f"{chunk_id!r} chunk at byte {offset} declares {size} bytes, the file has {len(data) - body_start}"
            )
        body = view[body_start:body_start + size]
        if chunk_id == b"fmt ":
            if size < _FMT.size:
                raise TruncatedChunkError(base, f"fmt chunk of {size} bytes is shorter than {_FMT.size}")
            tag, channels, rate, _byte_rate, _align, bits = _FMT.unpack_from(body)
            if tag != _PCM:
                raise UnsupportedEncodingError(base, f"format tag {tag}, expected integer PCM (1)")
            if channels != 2:
                raise UnsupportedChannelCountError(base, f"{channels} channel(s), expected 2 (I and Q)")
            if bits != 16:
                raise UnsupportedSampleWidthError(base, f"{bits}-bit samples, expected 16")
            if rate <= 0:
                raise UnsupportedEncodingError(base, f"sample rate {rate} in the fmt chunk must be positive")
            header_rate = rate
        elif chunk_id == b"kiwi":
            if size != KIWI_HEADER.size:
                raise TruncatedChunkError(base, f"kiwi chunk at byte {offset} has {size} bytes, expected {KIWI_HEADER.size}")
            pending = bytes(body)
        elif chunk_id == b"data":
            if header_rate is None:
                raise UnsupportedEncodingError(base, f"data chunk at byte {offset} comes before the fmt chunk")
            if size % 4:
                raise TruncatedChunkError(base, f"data chunk at byte {offset} of {size} bytes is not whole I, Q pairs")
            if pending is not None:
                timestamps.append(_timestamp(n_samples, pending))
                pending = None
            pairs = np.frombuffer(body, dtype="<i2").reshape(-1, 2)
            chunks.append(_int16_to_samples(pairs))
            n_samples += pairs.shape[0]
        offset = body_start + size + (size & 1)  # RIFF chunks are padded to even sizes
    if header_rate is None:
        raise UnsupportedEncodingError(base, "no fmt chunk")
    if not allow_untimed and not any(t.has_solution for t in timestamps):
        raise NoGnssError(base, f"none of its {len(timestamps)} frame header(s) carries a GNSS timestamp (import it "
                                "with --untimed to keep it for metrics only)")
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.complex64)
    return KiwiWavRecording(file_name=base, samples=samples, timestamps=tuple(timestamps),
                            header_rate_hz=int(header_rate), name=name)


def read_kiwi_wav(path: str | os.PathLike) -> KiwiWavRecording:
    """Read a kiwirecorder IQ file from disk (see decode_kiwi_wav)."""
    path = Path(path)
    return decode_kiwi_wav(path.read_bytes(), path.name)


def encode_kiwi_wav(
    samples: np.ndarray,
    timestamps: tuple[GpsTimestamp, ...] | list[GpsTimestamp],
    header_rate_hz: int,
    frame_samples: int = FRAME_SAMPLES,
) -> bytes:
    """The bytes of a kiwirecorder IQ file: frames of ``frame_samples`` IQ pairs (the last may be
    shorter), each with a ``kiwi`` chunk. A timestamp must sit on a frame's first sample; frames
    without one get a no-GNSS header (fix age 255)."""
    if int(header_rate_hz) != header_rate_hz or not 0 < header_rate_hz < 2**32:
        raise ValueError(f"header rate {header_rate_hz} must be a positive integer")
    pairs = samples_to_int16(samples)
    by_frame: dict[int, GpsTimestamp] = {}
    for ts in timestamps:
        if ts.sample_index % frame_samples or not 0 <= ts.sample_index < max(len(pairs), 1):
            raise ValueError(f"timestamp at sample {ts.sample_index} is not on a frame start "
                             f"(frames of {frame_samples} samples, {len(pairs)} samples)")
        by_frame[ts.sample_index // frame_samples] = ts
    out = io.BytesIO()
    out.write(b"RIFF\0\0\0\0WAVE")
    out.write(_CHUNK.pack(b"fmt ", _FMT.size))
    out.write(_FMT.pack(_PCM, 2, int(header_rate_hz), int(header_rate_hz) * 4, 4, 16))
    for frame, start in enumerate(range(0, len(pairs), frame_samples)):
        ts = by_frame.get(frame)
        if ts is None:
            header = KIWI_HEADER.pack(NO_GNSS_FIX_AGE, 0, 0, 0)
        else:
            age = ts.fix_age_s if ts.fix_age_s is not None else (0 if ts.has_solution else NO_GNSS_FIX_AGE)
            header = KIWI_HEADER.pack(age, 0, ts.gps_seconds, ts.gps_nanoseconds)
        out.write(_CHUNK.pack(b"kiwi", KIWI_HEADER.size))
        out.write(header)
        body = pairs[start:start + frame_samples].astype("<i2").tobytes()
        out.write(_CHUNK.pack(b"data", len(body)))
        out.write(body)
    data = bytearray(out.getvalue())
    struct.pack_into("<I", data, 4, len(data) - 8)
    return bytes(data)


def write_kiwi_wav(
    directory: str | os.PathLike,
    name: KiwiWavName,
    samples: np.ndarray,
    timestamps: tuple[GpsTimestamp, ...] | list[GpsTimestamp],
    header_rate_hz: int,
) -> Path:
    """Write one file named after ``name`` into ``directory``; returns its path.

    Written to a temporary name first and renamed, so a failed export leaves no half file.
    """
    data = encode_kiwi_wav(samples, timestamps, header_rate_hz)
    path = Path(directory) / name.file_name
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)
    return path


def recording_capture(recording: KiwiWavRecording, session_key: str, receiver_id: str) -> Capture:
    """The recording as a Capture (source "recording", dBFS samples, its frame timestamps).

    Its rate and start are the GNSS-measured ones (dsp/timing.py) when the fresh fixes allow a time
    model, else the header rate and the file name's start; details keep the file's own facts. A file
    without any GNSS timestamp (only decoded with allow_untimed) is marked imported untimed.
    """
    details: dict = {"file_name": recording.file_name, "receiver_name": recording.name.receiver,
                     "header_sample_rate_hz": recording.header_rate_hz, "frame_samples": FRAME_SAMPLES,
                     "file_samples": len(recording.samples), "nominal_sample_rate_hz": float(recording.header_rate_hz)}
    if not any(t.has_solution for t in recording.timestamps):
        details[UNTIMED_IMPORT_DETAIL] = True
    try:
        model = fit_time_model(recording.timestamps, recording.header_rate_hz, recording.name.start_utc,
                               len(recording.samples))
        rate, start = model.sample_rate_hz, model.sample0_utc
        details["time_model"] = model.summary()
    except UntimedCaptureError as exc:
        rate, start = float(recording.header_rate_hz), recording.name.start_utc
        details["untimed_reason"] = str(exc)
    return Capture(session_key=session_key, receiver_id=receiver_id, samples=recording.samples, sample_rate_hz=rate,
                   center_frequency_hz=recording.name.frequency_hz, start_time=start, source_kind="recording",
                   gps_timestamps=recording.timestamps, power_unit="dBFS", details=details)


def write_recording(directory: str | os.PathLike, recording: KiwiWavRecording) -> Path:
    """Write a decoded recording back under its own name."""
    return write_kiwi_wav(directory, recording.name, recording.samples, recording.timestamps,
                          recording.header_rate_hz)


__all__ = [
    "BadFileNameError", "FRAME_SAMPLES", "KiwiWavError", "KiwiWavName", "KiwiWavRecording", "NoGnssError",
    "NotRiffWaveError", "TruncatedChunkError", "UnsupportedChannelCountError", "UnsupportedEncodingError",
    "UnsupportedSampleWidthError", "decode_kiwi_wav", "encode_kiwi_wav", "parse_file_name", "read_kiwi_wav",
    "recording_capture", "samples_to_int16", "write_kiwi_wav", "write_recording",
]
