"""The unit every source produces: one receiver's IQ recording of one session.

Power convention used everywhere in Heimdall: samples are complex baseband volts scaled so that
mean(|x|**2) is the power in milliwatts at the receiver's antenna port. 10*log10(mean|x|^2) is
therefore dBm, with no hidden calibration constant.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import numpy as np

from heimdall_pipeline.receivers import Receiver

# Capture.details flag of a recording imported untimed (`heimdall session import --untimed`): no
# GNSS time by request; metrics only, refused by TDoA.
UNTIMED_IMPORT_DETAIL = "imported_untimed"


@dataclasses.dataclass(frozen=True)
class GpsTimestamp:
    """A GPS time tag for the first sample of one frame (KiwiSDR IQ mode).

    gps_seconds: GPS seconds of the week, as the KiwiSDR sends them.
    fix_age_s: seconds since the receiver's last GNSS fix as the frame header reports it
        (0 = this tag comes from a fresh fix; None where the source does not say). Time models
        trust fresh fixes only.
    """

    sample_index: int
    gps_seconds: int
    gps_nanoseconds: int
    has_solution: bool
    fix_age_s: int | None = None


@dataclasses.dataclass(frozen=True)
class Capture:
    """IQ samples with what is needed to interpret them.

    samples: 1-D complex64, power in mW (see module docstring); real float32 for audio (below).
    sample_rate_hz: the true rate (a KiwiSDR reports e.g. 12001.135, not the nominal 12000).
    center_frequency_hz: the frequency the receiver was tuned to.
    start_time: UTC time of the first sample.
    source_kind: "simulated" or "kiwisdr".
    power_unit: the scale of the samples: "dBm" (mW at the antenna port, as the simulator makes
        them) or "dBFS" (the ADC's full scale, as a KiwiSDR sends them).
    calibration: for dBFS samples that could be calibrated, {"offset_db": dBm - dBFS, "spread_db",
        "frames"}; None where no calibration exists (the figures then stay in dBFS).
    details: JSON-serialisable source facts (server version, dropped frames, RSSI, ...).
    ground_truth: JSON-serialisable truth, only for simulated captures.
    audio: None for IQ. For demodulated audio (an OpenWebRX receiver): the samples are real
        float32 (int16 / 32768, after the receiver's AGC) and this says how audio maps to RF:
        {"mode": "usb", "dial_frequency_hz", "passband_hz": [low, high], "agc": true,
        "smeter": {"unit", "readings", "mean_db", ...} or null}; center_frequency_hz is the
        requested frequency (the dial plus the passband's middle for USB).
    """

    session_key: str
    receiver_id: str
    samples: np.ndarray
    sample_rate_hz: float
    center_frequency_hz: float
    start_time: datetime
    source_kind: str
    gps_timestamps: tuple[GpsTimestamp, ...] = ()
    power_unit: str = "dBm"
    calibration: dict[str, Any] | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    ground_truth: dict[str, Any] | None = None
    audio: dict[str, Any] | None = None

    @property
    def is_audio(self) -> bool:
        return self.audio is not None

    @property
    def audio_untimed_reason(self) -> str | None:
        """Why an audio capture can never be timed (None for IQ)."""
        if self.audio is None:
            return None
        return (f"the {self.source_kind} source gives demodulated audio without timestamps "
                "(no IQ, no GNSS time): not usable for TDoA")

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate_hz

    @property
    def nbytes(self) -> int:
        return int(self.samples.nbytes)


@dataclasses.dataclass(frozen=True)
class ReceiverCapture:
    """A capture with the receiver that made it (its location goes into the stored metadata),
    and what to show beside it in the UI once stored (e.g. its spectrum picture)."""

    receiver: Receiver
    capture: Capture
    ui_metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    attempts: int = 1  # tries it took to record

