"""Segment spectra shared by the metrics and the pictures, and the spectrum picture itself."""

import io

import numpy as np
import pytest
import scipy.signal
from PIL import Image

from heimdall_pipeline.dsp.spectra import SEGMENTS_PER_BLOCK, segment_power_rows
from heimdall_pipeline.plots.spectrum import WATERFALL_ROWS, power_spectrogram, spectrum_png

FS = 12000.0


def tone_in_noise(n: int, tone_hz: float = 1000.0, tone_mw: float = 2.0, noise_mw: float = 0.01, seed: int = 1):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FS
    noise = (rng.normal(size=n) + 1j * rng.normal(size=n)) * np.sqrt(noise_mw / 2)
    return (np.sqrt(tone_mw) * np.exp(2j * np.pi * tone_hz * t) + noise).astype(np.complex64)


@pytest.mark.parametrize("n", [4096, 120000, 120000 + 333])
@pytest.mark.parametrize("max_rows", [1, 7, 128, 10_000])
def test_rows_sum_every_segment_once(n, max_rows):
    x = tone_in_noise(n)
    rows, counts = segment_power_rows(x, 256, max_rows)
    n_segments = 1 + (n - 256) // 128
    assert rows.shape[0] == len(counts) <= max_rows
    assert counts.sum() == n_segments and counts.min() >= 1
    whole, one = segment_power_rows(x, 256, 1)
    assert one.tolist() == [n_segments]
    np.testing.assert_allclose(rows.sum(axis=0), whole[0], rtol=1e-6)


def test_blocks_do_not_change_the_result():
    """More segments than one block: the block loop must equal scipy's Welch."""
    x = tone_in_noise(200 * 64)
    assert 1 + (len(x) - 128) // 64 > SEGMENTS_PER_BLOCK
    rows, counts = segment_power_rows(x, 128)
    _, reference = scipy.signal.welch(x, FS, "hann", 128, 64, detrend=False, return_onesided=False,
                                      scaling="density")
    window = scipy.signal.get_window("hann", 128)
    np.testing.assert_allclose(rows[0] / (counts[0] * FS * np.dot(window, window)), reference, rtol=2e-5)


def test_too_short_or_not_1d_is_refused():
    with pytest.raises(ValueError, match="nperseg=256"):
        segment_power_rows(np.zeros(100, np.complex64), 256)
    with pytest.raises(ValueError, match="1-D"):
        power_spectrogram(np.zeros((10, 10), np.complex64), FS)


def test_spectrogram_power_frequency_and_times():
    x = tone_in_noise(120000)
    spectrogram = power_spectrogram(x, FS)
    df = spectrogram.frequencies_hz[1] - spectrogram.frequencies_hz[0]
    # Parseval: the PSD integrates to the mean power (mW)
    assert spectrogram.mean_psd.sum() * df == pytest.approx(np.mean(np.abs(x) ** 2), rel=1e-3)
    assert abs(spectrogram.frequencies_hz[np.argmax(spectrogram.mean_psd)] - 1000.0) <= df
    assert np.all(np.diff(spectrogram.frequencies_hz) > 0)
    assert spectrogram.waterfall.shape == (len(spectrogram.row_times_s), 1024)
    assert len(spectrogram.row_times_s) <= WATERFALL_ROWS
    assert 0 < spectrogram.row_times_s[0] < spectrogram.row_times_s[-1] < len(x) / FS
    # every row sees the tone at the same frequency
    assert set(np.argmax(spectrogram.waterfall, axis=1)) == {int(np.argmax(spectrogram.mean_psd))}


@pytest.mark.parametrize("n", [64, 1000, 120000])
def test_spectrum_png_is_a_picture_of_fixed_size(n):
    png = spectrum_png(tone_in_noise(n), FS, 7.1e6, "s1 / f5len")
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (512, 384)
