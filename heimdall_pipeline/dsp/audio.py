"""Metrics of a demodulated audio capture (an OpenWebRX receiver: USB audio after AGC).

Pure numpy/scipy. The audio is turned back into the RF band it came from, then measured with
the same estimators as IQ (dsp/metrics.compute_metrics):

* USB maps RF f to audio f - dial. The analytic signal of the audio (scipy.signal.hilbert: the
  positive audio frequencies only), scaled by 1/sqrt(2) so that its mean |x|^2 is the audio's
  mean x^2, is shifted down by the passband's middle (where the requested frequency sounds) and
  decimated (polyphase, scipy.signal.resample_poly) to a rate just above the passband width. The
  result is complex baseband centred on the requested frequency: its frequency offset is the RF
  offset of the tone from the requested frequency (= dial + audio frequency - requested).
* SNR: the tone's power over the noise *in the audio passband* (noise density times the passband
  width), because outside the passband there is no noise to compare with.
* Levels. The audio is after the receiver's AGC, so its dBFS (RMS of int16 / 32768) is a relative
  figure only. The power figure is the S-meter (mean of its linear readings: the channel's power
  after the bandpass, dB relative to the SDR's full scale); split by the measured SNR into the
  tone's and the noise's part: signal = S-meter * snr / (1 + snr), noise = S-meter / (1 + snr).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import scipy.signal

from heimdall_pipeline.dsp.metrics import InvalidCaptureError, SignalMetrics, compute_metrics

DECIMATION_MARGIN = 1.1  # the decimated rate exceeds the passband width by at least this factor


@dataclasses.dataclass(frozen=True)
class AudioMetrics:
    """Metrics of one audio capture. `rf` is measured on the baseband rebuilt from the audio
    (powers in audio dBFS, frequency offsets from the requested frequency)."""

    rf: SignalMetrics
    baseband_rate_hz: float
    passband_width_hz: float
    snr_db: float | None  # in the audio passband; None when no signal is detected
    rf_offset_hz: float | None  # tone RF - requested frequency
    audio_frequency_hz: float | None  # where the tone sounds
    audio_level_dbfs: float  # RMS of the audio, after AGC: relative
    smeter_dbfs: float | None  # mean S-meter power
    signal_power_dbfs: float | None  # S-meter share of the tone
    noise_power_dbfs: float | None  # S-meter share of the noise

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _db(x: float) -> float:
    return 10.0 * math.log10(x) if x > 0 else -math.inf


def usb_baseband(audio: np.ndarray, sample_rate_hz: float, passband_hz: tuple[float, float]
                 ) -> tuple[np.ndarray, float]:
    """Complex baseband (complex64) centred on the passband's middle, and its rate."""
    x = np.asarray(audio)
    if x.ndim != 1 or x.dtype.kind != "f":
        raise InvalidCaptureError(f"audio must be 1-D real samples, got {x.dtype} of shape {x.shape}")
    low, high = passband_hz
    width = float(high - low)
    centre = (low + high) / 2.0
    analytic = scipy.signal.hilbert(x.astype(np.float64)) / math.sqrt(2.0)
    n = np.arange(analytic.size)
    shifted = analytic * np.exp(-2j * np.pi * centre / sample_rate_hz * n)
    q = max(1, int(sample_rate_hz // (width * DECIMATION_MARGIN)))
    baseband = scipy.signal.resample_poly(shifted, 1, q) if q > 1 else shifted
    return baseband.astype(np.complex64), sample_rate_hz / q


def smeter_mean_dbfs(readings: list[tuple[int, float]] | list[list[float]]) -> float | None:
    values = [float(v) for _, v in readings if v is not None and float(v) >= 0]
    return _db(float(np.mean(values))) if values else None


def compute_audio_metrics(audio: np.ndarray, sample_rate_hz: float, passband_hz: tuple[float, float],
                          smeter_readings: list | tuple = ()) -> AudioMetrics:
    """See the module docstring."""
    baseband, rate = usb_baseband(audio, sample_rate_hz, passband_hz)
    rf = compute_metrics(baseband, rate)
    width = float(passband_hz[1] - passband_hz[0])
    centre = (passband_hz[0] + passband_hz[1]) / 2.0
    snr_db = None
    if rf.signal_detected and rf.signal_power_db is not None:
        snr_db = rf.signal_power_db - (rf.noise_floor_db_hz + _db(width))
    smeter = smeter_mean_dbfs(list(smeter_readings))
    signal_dbfs = noise_dbfs = None
    if smeter is not None:
        snr = 10.0 ** (snr_db / 10.0) if snr_db is not None else 0.0
        noise_dbfs = smeter - _db(1.0 + snr)
        signal_dbfs = smeter + _db(snr / (1.0 + snr)) if snr > 0 else None
    rms = float(np.sqrt(np.mean(np.square(np.asarray(audio, dtype=np.float64)))))
    offset = rf.frequency_offset_hz
    return AudioMetrics(rf=rf, baseband_rate_hz=rate, passband_width_hz=width, snr_db=snr_db, rf_offset_hz=offset,
                        audio_frequency_hz=None if offset is None else centre + offset,
                        audio_level_dbfs=_db(rms * rms), smeter_dbfs=smeter,
                        signal_power_dbfs=signal_dbfs, noise_power_dbfs=noise_dbfs)
