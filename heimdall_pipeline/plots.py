"""Pictures of captures for people: PSD and waterfall with matplotlib. No Dagster."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import mlab  # noqa: E402
import numpy as np  # noqa: E402


def spectrum_png(samples: np.ndarray, sample_rate_hz: float, center_frequency_hz: float, title: str,
                 *, nfft: int = 1024, dpi: int = 80) -> bytes:
    """A PNG with the Welch PSD (dBm/Hz, samples in mW) above a waterfall, frequency in kHz
    relative to the tuned centre."""
    nfft = int(min(nfft, max(64, 2 ** int(np.log2(max(len(samples), 64))))))
    spectrogram, freqs, times = mlab.specgram(samples, NFFT=nfft, Fs=sample_rate_hz, noverlap=nfft // 2,
                                              sides="twosided", scale_by_freq=True)
    freqs, spectrogram = np.fft.fftshift(freqs), np.fft.fftshift(spectrogram, axes=0)
    density_dbm_hz = 10 * np.log10(np.maximum(spectrogram, 1e-30))
    figure, (psd_axes, fall_axes) = plt.subplots(2, 1, figsize=(6.4, 4.8), dpi=dpi, sharex=True,
                                                 gridspec_kw={"height_ratios": [1, 1.4]})
    try:
        psd_axes.plot(freqs / 1e3, 10 * np.log10(np.maximum(spectrogram.mean(axis=1), 1e-30)), linewidth=0.8)
        psd_axes.set_ylabel("PSD (dBm/Hz)")
        psd_axes.grid(True, alpha=0.3)
        psd_axes.set_title(f"{title}  @ {center_frequency_hz / 1e6:.6f} MHz", fontsize=9)
        fall_axes.imshow(density_dbm_hz.T, aspect="auto", origin="lower", cmap="viridis",
                         extent=(freqs[0] / 1e3, freqs[-1] / 1e3, times[0], times[-1]))
        fall_axes.set_xlabel("offset from centre (kHz)")
        fall_axes.set_ylabel("time (s)")
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(figure)
