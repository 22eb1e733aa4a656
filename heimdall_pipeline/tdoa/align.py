"""Captures placed on GNSS time and resampled onto one common time base.

A ``TimedCapture`` is one receiver's samples with its position and its time model (dsp/timing.py),
or the reason it has none. ``align`` reads every timed capture at the same GPS instants
``reference + k / rate`` by band-limited interpolation, so sample k of every aligned series was
taken at the same true time whatever each receiver's clock rate, start time or dropped frames.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import scipy.fft

from heimdall_pipeline.dsp.resample import HALF_TAPS, interpolate_at
from heimdall_pipeline.dsp.timing import NS, TimeModel, UntimedCaptureError, fit_time_model
from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.capture import UNTIMED_IMPORT_DETAIL, Capture
from heimdall_pipeline.tdoa.band import SignalBand
from heimdall_pipeline.dsp.gnss_quality import GnssQuality, gnss_quality

# With a band, the series come out at this many times its highest |frequency|: the band then fills
# half the Nyquist band, where the interpolation is exact (dsp/resample.py: -80 dB up to 80 %).
BAND_OVERSAMPLE = 2.0
MIN_BAND_RATE_HZ = 200.0
EDGE_S = 0.05
MIN_DECIMATION = 2.0


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
    gnss: GnssQuality | None = None  # the GNSS timing figures and verdict (dsp/gnss_quality.py)

    @property
    def is_timed(self) -> bool:
        return self.time_model is not None


def timed_capture(receiver: Receiver, capture: Capture) -> TimedCapture:
    """A TimedCapture from a stored or fresh capture: its time model is fitted from its GNSS tags
    (none for a file imported untimed: it is untimed by request), with its GNSS quality. An audio
    capture has none: it stays untimed with the reason, and holds no samples."""
    if capture.is_audio:
        return TimedCapture(receiver_id=receiver.id, latitude=float(receiver.latitude),
                            longitude=float(receiver.longitude), samples=np.zeros(0, np.complex64),
                            time_model=None, untimed_reason=capture.audio_untimed_reason)
    imported_untimed = bool(capture.details.get(UNTIMED_IMPORT_DETAIL))
    model, reason = None, None
    if not imported_untimed:
        try:
            model = fit_time_model(capture.gps_timestamps, capture.sample_rate_hz, capture.start_time,
                                   len(capture.samples))
        except UntimedCaptureError as exc:
            reason = str(exc)
    quality = gnss_quality(capture.gps_timestamps, model, reason, len(capture.samples), capture.sample_rate_hz,
                           imported_untimed=imported_untimed)
    return TimedCapture(receiver_id=receiver.id, latitude=float(receiver.latitude), longitude=float(receiver.longitude),
                        samples=capture.samples, time_model=model, untimed_reason=quality.untimed_reason, gnss=quality)


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


def decimated(samples: np.ndarray, factor: float) -> np.ndarray:
    """The capture's band within +-rate / (2 factor), as a series at rate / factor (about: the
    length is FFT-friendly): sample k is the band-limited capture at its own index k * len(samples)
    / len(result). An FFT, the central bins, an inverse FFT: a brick-wall filter and an exact
    decimation in one, periodic over the capture (its ends ring with each other: EDGE_S)."""
    n = samples.size
    m = min(n, scipy.fft.next_fast_len(int(math.ceil(n / factor))))
    if m == n:
        return samples
    spectrum = scipy.fft.fft(samples)
    kept = np.concatenate([spectrum[:m - m // 2], spectrum[n - m // 2:]])
    del spectrum
    return (scipy.fft.ifft(kept) * np.float32(m / n)).astype(np.complex64)


def common_span(captures: list[TimedCapture], margins: list[float] | None = None) -> tuple[int, float]:
    """(start in GPS ns, length in s) of the time every capture covers, leaving margins[i] samples
    (default HALF_TAPS) at each end of capture i; the length may be <= 0."""
    starts, ends = [], []
    for i, c in enumerate(captures):
        m = c.time_model
        margin = HALF_TAPS if margins is None else margins[i]
        starts.append(m.sample0_gps_ns + int(round(m.gps_seconds_since(m.sample0_gps_ns, margin) * NS)))
        ends.append((m, len(c.samples) - 1 - margin))
    reference = max(starts)
    length = min(m.gps_seconds_since(reference, last) for m, last in ends)
    return reference, float(length)


def align(captures: list[TimedCapture], band: SignalBand | None = None) -> AlignedCaptures:
    """Resample timed captures onto their common span at one rate: the median of the captures'
    nominal rates, or with a band, BAND_OVERSAMPLE times the band's highest |frequency| when that
    is lower (each capture is decimated to it first: the same lags from a fraction of the samples).
    Raises ValueError when a capture is untimed or the span is empty."""
    untimed = [c.receiver_id for c in captures if not c.is_timed]
    if untimed:
        raise ValueError(f"captures without a time model cannot be aligned: {', '.join(untimed)}")
    rate = float(np.median([c.time_model.nominal_sample_rate_hz for c in captures]))
    if band is not None:
        wanted = max(2 * max(abs(band.low_hz), abs(band.high_hz)) * BAND_OVERSAMPLE, MIN_BAND_RATE_HZ)
        if wanted * MIN_DECIMATION <= rate:  # a smaller cut saves little and costs a brick-wall filter's ringing
            rate = wanted
    factors = [max(1.0, c.time_model.nominal_sample_rate_hz / rate) for c in captures]
    margins = [HALF_TAPS * f + (EDGE_S * rate * f if f > 1.0 else 0.0) for f in factors]
    reference, length = common_span(captures, margins)
    n = int(np.floor(length * rate))
    if n < 1:
        raise ValueError("the captures do not overlap in time")
    t = np.arange(n, dtype=np.float64) / rate
    series = np.empty((len(captures), n), dtype=np.complex64)
    for i, c in enumerate(captures):
        samples = decimated(c.samples, factors[i])
        positions = c.time_model.sample_index_at(reference, t) * (samples.size / c.samples.size)
        series[i] = interpolate_at(samples, positions)
    return AlignedCaptures(receiver_ids=tuple(c.receiver_id for c in captures), series=series,
                           reference_gps_ns=reference, sample_rate_hz=rate)
