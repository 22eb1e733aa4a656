"""Pictures of captures for people: PSD and waterfall with matplotlib. No Dagster."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
from matplotlib import mlab  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
import numpy as np  # noqa: E402

# The waterfall shows at most this many time rows (power-averaged): the axes is ~250 px tall.
MAX_WATERFALL_ROWS = 128


def spectrum_png(samples: np.ndarray, sample_rate_hz: float, center_frequency_hz: float, title: str,
                 *, nfft: int = 1024, dpi: int = 80) -> bytes:
    """A PNG with the Welch PSD (dBm/Hz, samples in mW) above a waterfall, frequency in kHz
    relative to the tuned centre."""
    nfft = int(min(nfft, max(64, 2 ** int(np.log2(max(len(samples), 64))))))
    spectrogram, freqs, times = mlab.specgram(samples, NFFT=nfft, Fs=sample_rate_hz, noverlap=nfft // 2,
                                              sides="twosided", scale_by_freq=True)
    # two-sided mlab.specgram already returns frequencies ascending from -fs/2 (no fftshift)
    waterfall = spectrogram
    if waterfall.shape[1] > MAX_WATERFALL_ROWS:  # average groups of time rows (display resolution)
        group = -(-waterfall.shape[1] // MAX_WATERFALL_ROWS)
        rows = waterfall.shape[1] // group
        waterfall = waterfall[:, :rows * group].reshape(waterfall.shape[0], rows, group).mean(axis=2)
    density_dbm_hz = 10 * np.log10(np.maximum(waterfall, 1e-30))
    # Figure without pyplot: no global figure registry, so the IO manager's upload threads can
    # render concurrently; fixed margins instead of tight_layout (which drew every text twice).
    figure = Figure(figsize=(6.4, 4.8), dpi=dpi)
    psd_axes, fall_axes = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 1.4]})
    figure.subplots_adjust(left=0.13, right=0.97, top=0.93, bottom=0.1, hspace=0.08)
    psd_axes.plot(freqs / 1e3, 10 * np.log10(np.maximum(spectrogram.mean(axis=1), 1e-30)), linewidth=0.8)
    psd_axes.set_ylabel("PSD (dBm/Hz)")
    psd_axes.grid(True, alpha=0.3)
    psd_axes.set_title(f"{title}  @ {center_frequency_hz / 1e6:.6f} MHz", fontsize=9)
    fall_axes.imshow(density_dbm_hz.T, aspect="auto", origin="lower", cmap="viridis", interpolation="nearest",
                     extent=(freqs[0] / 1e3, freqs[-1] / 1e3, times[0], times[-1]))
    fall_axes.set_xlabel("offset from centre (kHz)")
    fall_axes.set_ylabel("time (s)")
    buffer = io.BytesIO()
    # zlib level 1: the noisy waterfall barely compresses anyway, level 6 cost ~3x the time
    figure.savefig(buffer, format="png", pil_kwargs={"compress_level": 1})
    return buffer.getvalue()
