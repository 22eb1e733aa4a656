"""Captures placed on GNSS time and resampled onto one common time base.

A ``TimedCapture`` is one receiver's samples with its position and its time model (dsp/timing.py),
or the reason it has none. ``align`` reads every timed capture at the same GPS instants
``reference + k / rate`` by band-limited interpolation, so sample k of every aligned series was
taken at the same true time whatever each receiver's clock rate, start time or dropped frames.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from heimdall_pipeline.dsp.resample import HALF_TAPS, interpolate_at
from heimdall_pipeline.dsp.timing import NS, TimeModel, UntimedCaptureError, fit_time_model
from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.sources.capture import Capture


@dataclasses.dataclass(frozen=True)
class TimedCapture:
    """One receiver's capture for TDoA.

    samples: complex64 baseband, any scale (TDoA uses shapes, not levels).
    time_model: sample index -> GPS time; None when the capture cannot be timed (untimed_reason
        says why).
    """

    receiver_id: str
    latitude: float
    longitude: float
    samples: np.ndarray
    time_model: TimeModel | None
    untimed_reason: str | None = None

    @property
    def is_timed(self) -> bool:
        return self.time_model is not None


def timed_capture(receiver: Receiver, capture: Capture) -> TimedCapture:
    """A TimedCapture from a stored or fresh capture: its time model is fitted from its GNSS tags
    (an audio capture has none: it stays untimed with the reason, and holds no samples)."""
    if capture.is_audio:
        return TimedCapture(receiver_id=receiver.id, latitude=float(receiver.latitude),
                            longitude=float(receiver.longitude), samples=np.zeros(0, np.complex64),
                            time_model=None, untimed_reason=capture.audio_untimed_reason)
    try:
        model = fit_time_model(capture.gps_timestamps, capture.sample_rate_hz, capture.start_time, len(capture.samples))
        reason = None
    except UntimedCaptureError as exc:
        model, reason = None, str(exc)
    return TimedCapture(receiver_id=receiver.id, latitude=float(receiver.latitude), longitude=float(receiver.longitude),
                        samples=capture.samples, time_model=model, untimed_reason=reason)


@dataclasses.dataclass(frozen=True)
class AlignedCaptures:
    """Samples of several receivers at the same GPS instants: ``series[i][k]`` was taken at
    ``reference_gps_ns + k / sample_rate_hz`` by receiver ``receiver_ids[i]``."""

    receiver_ids: tuple[str, ...]
    series: np.ndarray  # (receivers, samples) complex64
    reference_gps_ns: int
    sample_rate_hz: float

    @property
    def duration_s(self) -> float:
        return self.series.shape[1] / self.sample_rate_hz


def common_span(captures: list[TimedCapture]) -> tuple[int, float]:
    """(start in GPS ns, length in s) of the time every capture covers; the length may be <= 0."""
    starts, ends = [], []
    for c in captures:
        m = c.time_model
        starts.append(m.sample0_gps_ns + int(round(m.gps_seconds_since(m.sample0_gps_ns, HALF_TAPS) * NS)))
        ends.append((m, len(c.samples) - 1 - HALF_TAPS))
    reference = max(starts)
    length = min(m.gps_seconds_since(reference, last) for m, last in ends)
    return reference, float(length)


def align(captures: list[TimedCapture], sample_rate_hz: float | None = None) -> AlignedCaptures:
    """Resample timed captures onto their common span at one rate (default: the median of the
    captures' nominal rates). Raises ValueError when a capture is untimed or the span is empty."""
    untimed = [c.receiver_id for c in captures if not c.is_timed]
    if untimed:
        raise ValueError(f"captures without a time model cannot be aligned: {', '.join(untimed)}")
    rate = float(sample_rate_hz or np.median([c.time_model.nominal_sample_rate_hz for c in captures]))
    reference, length = common_span(captures)
    n = int(np.floor(length * rate))
    if n < 1:
        raise ValueError("the captures do not overlap in time")
    t = np.arange(n, dtype=np.float64) / rate
    series = np.empty((len(captures), n), dtype=np.complex64)
    for i, c in enumerate(captures):
        series[i] = interpolate_at(c.samples, c.time_model.sample_index_at(reference, t))
    return AlignedCaptures(receiver_ids=tuple(c.receiver_id for c in captures), series=series,
                           reference_gps_ns=reference, sample_rate_hz=rate)
