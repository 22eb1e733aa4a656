"""Pictures of captures for people: PSD and waterfall with matplotlib. No Dagster.

matplotlib is imported when the first picture is drawn, not when the code location loads.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np

from heimdall_pipeline.dsp.spectra import hann_window, segment_power_rows

# Display resolution of the waterfall: its axes is ~430 x 180 px, so more cells only cost memory.
WATERFALL_ROWS = 128
WATERFALL_COLUMNS = 256


@dataclasses.dataclass(frozen=True)
class Spectrogram:
    """Power spectral density per Hz in the samples' power unit (mW/Hz for samples in mW).

    frequencies_hz: ascending offsets from the tuned centre, one per FFT bin.
    mean_psd: average over all segments (Welch), one value per bin.
    waterfall: rows x bins, each row the average of consecutive segments.
    row_times_s: time of the middle of each row.
    """

    frequencies_hz: np.ndarray
    mean_psd: np.ndarray
    waterfall: np.ndarray
    row_times_s: np.ndarray


def power_spectrogram(samples: np.ndarray, sample_rate_hz: float, *, nfft: int = 1024,
                      max_rows: int = WATERFALL_ROWS) -> Spectrogram:
    """Hann-windowed, 50 %-overlap two-sided spectrogram, averaged down to at most max_rows rows."""
    samples = np.asarray(samples)
    if samples.ndim != 1 or len(samples) < 2:
        raise ValueError(f"a spectrogram needs a 1-D capture of at least 2 samples, got shape {samples.shape}")
    nfft = int(min(nfft, 2 ** int(np.log2(len(samples)))))
    rows, counts = segment_power_rows(samples, nfft, max_rows)
    _, window_power = hann_window(nfft, "float64")
    scale = 1.0 / (sample_rate_hz * window_power)
    mean_psd = np.fft.fftshift(rows.sum(axis=0) * (scale / counts.sum()))
    rows *= scale / counts[:, None]
    hop = nfft - nfft // 2
    first_segment_of_row = np.concatenate(([0.0], np.cumsum(counts)[:-1]))
    row_times = (nfft / 2 + (first_segment_of_row + (counts - 1) / 2) * hop) / sample_rate_hz
    return Spectrogram(np.fft.fftshift(np.fft.fftfreq(nfft, 1.0 / sample_rate_hz)), mean_psd,
                       np.fft.fftshift(rows, axes=1), row_times)


def _columns_averaged(values: np.ndarray, max_columns: int) -> np.ndarray:
    """values (rows x n, or n) with groups of adjacent columns averaged: at most max_columns left."""
    factor = -(-values.shape[-1] // max_columns)
    usable = values.shape[-1] // factor * factor
    return values[..., :usable].reshape(*values.shape[:-1], -1, factor).mean(axis=-1)


def _db(power: np.ndarray) -> np.ndarray:
    return 10 * np.log10(np.maximum(power, 1e-30))


def spectrum_png(samples: np.ndarray, sample_rate_hz: float, center_frequency_hz: float, title: str,
                 *, power_unit: str = "dBm", nfft: int = 1024, dpi: int = 80) -> bytes:
    """A PNG with the Welch PSD (in power_unit/Hz: dBm/Hz for samples in mW, dBFS/Hz for samples
    relative to full scale) above a waterfall, frequency in kHz relative to the tuned centre."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend
    from matplotlib.image import NonUniformImage

    spectrogram = power_spectrogram(samples, sample_rate_hz, nfft=nfft)
    frequencies_khz = spectrogram.frequencies_hz / 1e3
    psd_db_hz = _db(spectrogram.mean_psd)
    waterfall_db_hz = _db(_columns_averaged(spectrogram.waterfall, WATERFALL_COLUMNS))
    column_khz = _columns_averaged(frequencies_khz, WATERFALL_COLUMNS)
    times = spectrogram.row_times_s
    del spectrogram  # the full-resolution waterfall is not drawn
    # Figure without pyplot: no global figure registry, so captures can be rendered from several
    # threads; fixed margins instead of tight_layout (which drew every text twice).
    figure = Figure(figsize=(6.4, 4.8), dpi=dpi)
    psd_axes, fall_axes = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 1.4]})
    figure.subplots_adjust(left=0.13, right=0.97, top=0.93, bottom=0.1, hspace=0.08)
    psd_axes.plot(frequencies_khz, psd_db_hz, linewidth=0.8)
    psd_axes.set_ylabel(f"PSD ({power_unit}/Hz)")
    psd_axes.grid(True, alpha=0.3)
    psd_axes.set_title(f"{title}  @ {center_frequency_hz / 1e6:.6f} MHz", fontsize=9)
    # NonUniformImage maps each screen pixel to its nearest cell in uint8 RGBA; imshow's AxesImage
    # would resample the whole axes area in float32 RGBA first (~4 MB more per picture).
    waterfall = NonUniformImage(fall_axes, interpolation="nearest", cmap="viridis")
    waterfall.set_data(column_khz, times, waterfall_db_hz)
    fall_axes.add_image(waterfall)
    fall_axes.set_xlim(frequencies_khz[0], frequencies_khz[-1])
    fall_axes.set_ylim(0.0, len(samples) / sample_rate_hz)
    fall_axes.set_xlabel("offset from centre (kHz)")
    fall_axes.set_ylabel("time (s)")
    buffer = io.BytesIO()
    # zlib level 1: the noisy waterfall barely compresses anyway, level 6 cost ~3x the time
    figure.savefig(buffer, format="png", pil_kwargs={"compress_level": 1})
    # A figure is a web of reference cycles, freed only by the cyclic GC whenever it next runs;
    # dropping the artists now releases their image buffers at once.
    figure.clear()
    return buffer.getvalue()
