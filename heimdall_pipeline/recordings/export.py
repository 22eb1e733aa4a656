"""A stored session back to kiwirecorder IQ files (`heimdall session export --kiwi-wav DIR`)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from heimdall_pipeline.capture import Capture
from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.storage.kiwi_wav import BadFileNameError, KiwiWavName, parse_file_name, write_kiwi_wav


@dataclasses.dataclass(frozen=True)
class ExportedFile:
    path: Path
    receiver_id: str
    scale: float  # samples were multiplied by this to fit int16 full scale (1.0: written as stored)


def kiwi_wav_name(capture: Capture, receiver: Receiver) -> KiwiWavName:
    """The file name of a capture: its UTC start to the second, its frequency, the station name."""
    original = capture.details.get("file_name")
    if original:
        try:
            name = parse_file_name(original)
            if name.receiver:
                return name
        except BadFileNameError:
            pass
    return KiwiWavName(start_utc=capture.start_time.replace(microsecond=0), frequency_hz=capture.center_frequency_hz,
                       receiver=receiver.name if re.fullmatch(r"[^/\\_ ]+", receiver.name) else receiver.id)


def export_capture(directory: Path, capture: Capture, receiver: Receiver) -> ExportedFile:
    """Writes one capture as a kiwirecorder IQ file. dBFS captures are written as they are
    (bit for bit for imported ones); others (dBm) are scaled to 0.5 of full scale and the factor
    is returned (and recorded by the caller), never clipped."""
    samples = np.asarray(capture.samples)
    scale = 1.0
    peak = float(np.max(np.maximum(np.abs(samples.real), np.abs(samples.imag)))) if samples.size else 0.0
    if capture.power_unit != "dBFS" or peak >= 32767 / 32768:
        scale = 0.5 / peak if peak > 0 else 1.0
        samples = (samples * np.float32(scale)).astype(np.complex64)
    rate = capture.details.get("header_sample_rate_hz") or round(capture.sample_rate_hz)
    path = write_kiwi_wav(directory, kiwi_wav_name(capture, receiver), samples, capture.gps_timestamps, int(rate))
    return ExportedFile(path=path, receiver_id=receiver.id, scale=scale)
