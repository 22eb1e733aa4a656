"""Time differences of arrival from aligned captures: every pair's lag within the signal's band.

Per pair, the aligned series are cut into windows; each window's complex cross-correlation is
computed through the cross-spectrum limited to the signal's band (the noise outside it only blurs
the peak), searched within the lags the geometry allows (the baseline / c), and its peak located
to a fraction of a sample by band-limited interpolation of the correlation. The windows' lags are
combined robustly: the median and its spread pick the consistent windows, whose mean is the
pair's lag and whose scatter gives its standard error. One whole-span correlation per pair first
finds the lag to a sample; each window of the second receiver is shifted by it, so both windows
hold the same stretch of signal.

Sign convention: a pair (a, b)'s lag is arrival time at a minus arrival time at b.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import scipy.fft
import scipy.stats

from heimdall_pipeline.dsp.resample import HALF_TAPS, interpolate_at
from heimdall_pipeline.tdoa.align import AlignedCaptures
from heimdall_pipeline.tdoa.band import SignalBand

FINE_STEPS = 16  # sub-sample search grid around a correlation peak, steps per sample
OUTLIER_SIGMAS = 5.0  # only gross outliers: with few windows a tighter cut picks a cluster
MIN_WINDOWS = 3
LOCAL_SEARCH_FRACTION = 0.25  # windows scattered beyond this share of the lag bound are unusable anyway


@dataclasses.dataclass(frozen=True)
class PairLag:
    """One pair's time difference of arrival (arrival at receiver_a minus at receiver_b).

    lag_s: the robust mean over the consistent windows; standard_error_s: its standard error;
    window_spread_s: the scatter of single windows; windows_used / windows_total: what the robust
    combination kept; max_lag_s: the physical bound searched (baseline / c).
    """

    receiver_a: str
    receiver_b: str
    lag_s: float
    standard_error_s: float
    window_spread_s: float
    windows_used: int
    windows_total: int
    max_lag_s: float
    window_lags_s: tuple[float, ...] = ()

    def to_json(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


def frequency_offsets(aligned: AlignedCaptures, band: SignalBand, max_lags_s: list[float], window_s: float,
                      max_offset_hz: float) -> np.ndarray:
    """Each receiver's tuning offset relative to receiver 0 (Hz), from the cross-ambiguity peak:
    the frequency shift that maximises the band-limited cross-correlation within the allowed lags,
    on the middle window, refined between spectral bins. Without it, two receivers tuned a few Hz
    apart decorrelate within a window. max_lags_s[i]: the lag bound between receivers 0 and i."""
    rate = aligned.sample_rate_hz
    n = aligned.series.shape[1]
    width = min(int(round(window_s * rate)), n)
    start = (n - width) // 2
    m = scipy.fft.next_fast_len(2 * width)
    bin_hz = rate / m
    freqs = scipy.fft.fftfreq(m, d=1.0 / rate)
    mask = (freqs >= band.low_hz) & (freqs <= band.high_hz)
    reference = scipy.fft.fft(aligned.series[0, start:start + width], m)
    shifts = np.arange(-int(math.ceil(max_offset_hz / bin_hz)), int(math.ceil(max_offset_hz / bin_hz)) + 1)
    offsets = np.zeros(aligned.series.shape[0])
    for i in range(1, aligned.series.shape[0]):
        other = scipy.fft.fft(aligned.series[i, start:start + width], m)
        max_lag = max(2, int(math.ceil(max_lags_s[i] * rate)) + 2)
        peaks = np.empty(shifts.size)
        for k, shift in enumerate(shifts):
            # other shifted down by `shift` bins = derotated by shift * bin_hz
            corr = scipy.fft.ifft(reference * np.conj(np.roll(other, -shift)) * mask)
            peaks[k] = max(np.abs(corr[:max_lag + 1]).max(), np.abs(corr[-max_lag:]).max())
        k = int(np.argmax(peaks))
        frac = 0.0
        if 0 < k < shifts.size - 1:
            y0, y1, y2 = peaks[k - 1], peaks[k], peaks[k + 1]
            denom = y0 - 2 * y1 + y2
            frac = 0.5 * (y0 - y2) / denom if denom < 0 else 0.0
        offsets[i] = (shifts[k] + frac) * bin_hz
    return offsets


def _derotated(aligned: AlignedCaptures, offsets_hz: np.ndarray) -> np.ndarray:
    """The series with each receiver's tuning offset removed, so a pair stays coherent over a window."""
    t = np.arange(aligned.series.shape[1], dtype=np.float64) / aligned.sample_rate_hz
    out = aligned.series.copy()
    for i, offset in enumerate(offsets_hz):
        if offset:
            out[i] *= np.exp(-2j * np.pi * offset * t).astype(np.complex64)
    return out


def _window_lag(a: np.ndarray, b: np.ndarray, mask: np.ndarray, freqs: np.ndarray, rate: float,
                max_lag: int) -> float | None:
    """Sub-sample lag (samples) of one window: the band-limited cross-correlation's peak within
    +/- max_lag, refined by the slope of the cross-spectrum's phase over the band (a delay is a
    linear phase: exact for a pure delay, where the peak of a sampled correlation is biased by
    tenths of a microsecond). None when the peak sits on the edge of the allowed lags."""
    m = mask.size
    spec = scipy.fft.fft(a, m) * np.conj(scipy.fft.fft(b, m))
    spec *= mask
    corr = scipy.fft.ifft(spec)
    span = max_lag + HALF_TAPS + 2
    lags = np.concatenate([corr[-span:], corr[:span + 1]])  # lag -span .. +span
    mag = np.abs(lags[HALF_TAPS + 2: -(HALF_TAPS + 2)])  # lag -max_lag .. +max_lag
    k = int(np.argmax(mag))
    if k == 0 or k == mag.size - 1:
        return None
    centre = k + HALF_TAPS + 2  # index in `lags`
    fine = centre + np.arange(-FINE_STEPS, FINE_STEPS + 1) / FINE_STEPS
    values = np.abs(interpolate_at(lags, fine))
    peak = float(fine[int(np.argmax(values))] - span)
    # phase slope: spec ~ |S|^2 exp(-2 pi i f lag / rate); remove the peak's lag, fit what is left
    sel = mask != 0
    f = freqs[sel]
    x = spec[sel] * np.exp(2j * np.pi * f * peak / rate)
    x *= np.exp(-1j * np.angle(x.sum()))
    weight = np.abs(x)
    if not weight.any():
        return peak
    phase = np.angle(x)
    fc = f - np.average(f, weights=weight)
    slope = np.sum(weight * fc * phase) / np.sum(weight * fc * fc)  # radians per Hz
    return peak - slope * rate / (2 * np.pi)


def pair_lags(aligned: AlignedCaptures, band: SignalBand, max_lags_s: dict[tuple[int, int], float],
              window_s: float = 1.0, offsets_hz: np.ndarray | None = None) -> list[PairLag]:
    """Every requested pair's lag. max_lags_s: {(i, j): bound in s} for the pairs to measure
    (indices into aligned.receiver_ids); offsets_hz: the receivers' tuning offsets to remove
    (frequency_offsets). Pairs with fewer than MIN_WINDOWS consistent windows are left out."""
    rate = aligned.sample_rate_hz
    series = aligned.series if offsets_hz is None else _derotated(aligned, offsets_hz)
    width = int(round(window_s * rate))
    n = series.shape[1]
    if width < 16 or n < width:
        raise ValueError(f"window of {window_s} s does not fit the {n / rate:.3f} s the captures share")
    starts = range(0, n - width + 1, width)
    m = scipy.fft.next_fast_len(2 * width)
    freqs = scipy.fft.fftfreq(m, d=1.0 / rate)
    mask = ((freqs >= band.low_hz) & (freqs <= band.high_hz)).astype(np.complex64)
    # The whole span zero-padded to a fast FFT length: a span of real recordings is any number of
    # samples, and one with a large prime factor transforms ~5x slower (353,978 = 2 x 176,989).
    padded_n = scipy.fft.next_fast_len(n)
    all_freqs = scipy.fft.fftfreq(padded_n, d=1.0 / rate)
    in_band = ((all_freqs >= band.low_hz) & (all_freqs <= band.high_hz)).astype(np.complex64)
    spectra = scipy.fft.fft(series, padded_n, axis=-1) * in_band
    banded = scipy.fft.ifft(spectra, axis=-1)[:, :n].astype(np.complex64)
    out = []
    for (i, j), bound_s in max_lags_s.items():
        max_lag = max(2, int(math.ceil(bound_s * rate)) + 2)
        # First: where the peak is, from one band-limited correlation over the whole span,
        # searched over every lag the geometry allows.
        whole = np.abs(scipy.fft.ifft(spectra[i] * np.conj(spectra[j])))
        candidates = np.concatenate([whole[-max_lag:], whole[:max_lag + 1]])  # lag -max_lag .. +max_lag
        shift = int(np.argmax(candidates)) - max_lag
        # Then each window, b's window shifted by that lag so both hold the same stretch of the
        # signal (unshifted, the stretch only one of them holds acts as noise: ~1 us here),
        # searched within the scatter a usable pair may have (MAX_SPREAD_FRACTION of the bound).
        local = max(4, int(math.ceil(LOCAL_SEARCH_FRACTION * max_lag)) + 2)
        # The tuning offsets are only known to a fraction of a Hz; what is left decorrelates the
        # windows unevenly and biases their lags by microseconds: measure it on the whole span.
        a_all, b_all = banded[i], np.roll(banded[j], shift)
        valid = slice(max(shift, 0), n + min(shift, 0))
        residual = _residual_offset_hz(a_all[valid], b_all[valid], rate)
        other = series[j] * np.exp(-2j * np.pi * residual * np.arange(n) / rate).astype(np.complex64)
        lags = []
        for s in starts:
            if 0 <= s - shift and s - shift + width <= n:
                fine = _window_lag(series[i, s:s + width], other[s - shift:s - shift + width], mask, freqs, rate, local)
                lags.append(None if fine is None or abs(shift + fine) > max_lag else shift + fine)
        found = np.array([x for x in lags if x is not None]) / rate
        combined = _robust_mean(found)
        if combined is None:
            continue
        mean, spread, used = combined
        # Student's t: the scatter of a handful of windows understates the error of their mean
        t_factor = float(scipy.stats.t.ppf(0.975, used - 1)) / 1.959963984540054
        out.append(PairLag(receiver_a=aligned.receiver_ids[i], receiver_b=aligned.receiver_ids[j], lag_s=mean,
                           standard_error_s=t_factor * spread / math.sqrt(used), window_spread_s=spread, windows_used=used,
                           windows_total=len(lags), max_lag_s=float(bound_s),
                           window_lags_s=tuple(float(x) for x in found)))
    return out


def _residual_offset_hz(a: np.ndarray, b: np.ndarray, rate: float, block_s: float = 0.05) -> float:
    """The frequency by which b runs above a (two aligned, band-limited series of one signal): the
    mean phase step of their product between consecutive blocks (unambiguous within 1 / (2 block_s))."""
    block = max(1, int(round(block_s * rate)))
    count = a.size // block
    if count < 2:
        return 0.0
    product = (a[:count * block] * np.conj(b[:count * block])).reshape(count, block).sum(axis=1)
    step = np.sum(product[1:] * np.conj(product[:-1]))
    return float(-np.angle(step) / (2 * np.pi * block / rate))


def _robust_mean(values: np.ndarray) -> tuple[float, float, int] | None:
    """(mean, sample standard deviation, count) of the values within OUTLIER_SIGMAS robust sigmas
    of their median; None with fewer than MIN_WINDOWS of them."""
    if values.size < MIN_WINDOWS:
        return None
    median = float(np.median(values))
    sigma = 1.4826 * float(np.median(np.abs(values - median)))
    if sigma == 0.0:
        sigma = float(np.std(values)) or 1e-12
    keep = values[np.abs(values - median) <= OUTLIER_SIGMAS * sigma]
    if keep.size < MIN_WINDOWS:
        return None
    return float(keep.mean()), float(keep.std(ddof=1)), int(keep.size)
