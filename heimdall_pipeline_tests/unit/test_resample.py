"""Band-limited interpolation at fractional positions (simulator delays, TDoA alignment)."""

import numpy as np
import pytest

from heimdall_pipeline.dsp.resample import interpolate_at

FS = 12000.0


@pytest.mark.parametrize("tone_hz", [0.0, 250.0, 1000.0, 3000.0, -4000.0])
@pytest.mark.parametrize("fraction", [0.0, 0.1236, 0.5, 0.9])
def test_tones_read_between_samples_to_minus_80_db(tone_hz, fraction):
    n = 4000
    x = np.exp(2j * np.pi * tone_hz * np.arange(n) / FS).astype(np.complex64)
    positions = np.arange(100, n - 100, 7.0) + fraction
    expected = np.exp(2j * np.pi * tone_hz * positions / FS)
    assert np.max(np.abs(interpolate_at(x, positions) - expected)) < 1e-4


def test_integer_positions_return_the_samples_and_outside_reads_zero():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(300) + 1j * rng.standard_normal(300)).astype(np.complex64)
    assert np.allclose(interpolate_at(x, np.arange(300.0)), x, atol=1e-5)
    assert np.all(interpolate_at(x, np.array([-100.0, 400.0])) == 0)
    assert interpolate_at(x, np.zeros((2, 3))).shape == (2, 3)
    assert interpolate_at(np.zeros(0, np.complex64), np.array([1.0])).tolist() == [0j]
