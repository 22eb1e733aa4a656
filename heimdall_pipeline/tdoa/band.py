"""The signal's band: where, on the receivers' baseband, the transmitter stands above the noise.

Found before anything is aligned, from each capture's own spectrum (Welch, noise-normalised so
the floor is 1, averaged over the receivers): a carrier-only session is refused here, before a
single sample is resampled, and the captures of a signal are then cut down to its band (align.py)
so the rest of TDoA handles the band's rate, not the receivers' whole passband.

Pure numpy / scipy.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
import scipy.signal

BAND_THRESHOLD_DB = 6.0  # the band: contiguous bins at least this far above the noise floor
MIN_BANDWIDTH_HZ = 10.0  # rms; narrower than this, a signal has no time structure worth correlating
SPECTRUM_BLOCK = 2**15  # samples per Welch call: its segments stay ~1 MB whatever the capture length


class NoTimeStructureError(ValueError):
    """The signal cannot give a time difference (no signal, or a (nearly) pure carrier)."""


@dataclasses.dataclass(frozen=True)
class SignalBand:
    """Where the signal lies on the baseband (Hz relative to the tuned frequency)."""

    low_hz: float
    high_hz: float
    peak_snr_db: float
    rms_bandwidth_hz: float

    @property
    def width_hz(self) -> float:
        return self.high_hz - self.low_hz


def welch_nperseg(n: int, rate: float) -> int:
    """Segment length of the band's spectra: ~3 Hz bins, at least 8 segments in n samples."""
    target = 2 ** math.ceil(math.log2(max(rate / 3.0, 256)))
    return int(max(64, min(target, 2 ** int(math.log2(max(n // 8, 64))))))


def noise_normalised_spectrum(samples: np.ndarray, rate: float, nperseg: int) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies ascending, power / its median) of one series, Welch-averaged block by block."""
    total, blocks = None, 0
    for start in range(0, max(samples.size - nperseg + 1, 1), SPECTRUM_BLOCK):
        block = samples[start:start + SPECTRUM_BLOCK + nperseg // 2]
        if block.size < nperseg:
            break
        freqs, psd = scipy.signal.welch(block, fs=rate, nperseg=nperseg, return_onesided=False, detrend=False)
        weight = block.size
        total = psd * weight if total is None else total + psd * weight
        blocks += weight
    if total is None:
        raise NoTimeStructureError(f"{samples.size} samples are fewer than one spectrum segment of {nperseg}")
    order = np.argsort(freqs)
    psd = total[order] / blocks
    return freqs[order], psd / np.median(psd)


def band_of_spectra(freqs: np.ndarray, snr: np.ndarray, bin_hz: float, threshold_db: float = BAND_THRESHOLD_DB,
                    min_bandwidth_hz: float = MIN_BANDWIDTH_HZ) -> SignalBand:
    """The band around the strongest peak of a noise-normalised spectrum (floor 1) where it stays
    threshold_db above the floor. Raises NoTimeStructureError when nothing stands above the noise
    or the band's rms bandwidth is below min_bandwidth_hz."""
    peak = int(np.argmax(snr))
    above = snr >= 10 ** (threshold_db / 10.0)
    if not above[peak]:
        raise NoTimeStructureError(f"no signal stands {threshold_db:g} dB above the noise floor")
    lo = peak
    while lo > 0 and above[lo - 1]:
        lo -= 1
    hi = peak
    while hi < len(snr) - 1 and above[hi + 1]:
        hi += 1
    # rms bandwidth of the signal's power (noise removed): what sets the correlation peak's width.
    # Leakage around a strong carrier widens the band above the noise, not this.
    power = np.clip(snr[lo:hi + 1] - 1.0, 0.0, None)
    centre = float(np.sum(power * freqs[lo:hi + 1]) / np.sum(power))
    rms = float(np.sqrt(np.sum(power * (freqs[lo:hi + 1] - centre) ** 2) / np.sum(power)))
    if rms < min_bandwidth_hz:
        raise NoTimeStructureError(
            f"the signal's rms bandwidth is {rms:.1f} Hz (< {min_bandwidth_hz:g} Hz): a (nearly) pure carrier has no "
            "time structure to cross-correlate")
    return SignalBand(low_hz=float(freqs[lo] - bin_hz / 2), high_hz=float(freqs[hi] + bin_hz / 2),
                      peak_snr_db=float(10 * np.log10(snr[peak])), rms_bandwidth_hz=rms)


def signal_band(series: Sequence[np.ndarray], rate: float, threshold_db: float = BAND_THRESHOLD_DB,
                min_bandwidth_hz: float = MIN_BANDWIDTH_HZ) -> SignalBand:
    """The band of one signal heard in several series at (about) one rate: their noise-normalised
    spectra averaged, one series at a time (receivers' rates differ by ppm: the same bins)."""
    nper = welch_nperseg(min(s.size for s in series), rate)
    mean, freqs = None, None
    for s in series:
        f, snr = noise_normalised_spectrum(s, rate, nper)
        freqs, mean = (f, snr) if mean is None else (freqs, mean + snr)
    return band_of_spectra(freqs, mean / len(series), rate / nper, threshold_db, min_bandwidth_hz)
