"""Windowed segment spectra shared by the metrics (Welch PSD) and the pictures (waterfall).

One pass over strided views of the samples, a bounded block of segments at a time, so the memory
needed is the output plus one block (~0.5 MB), whatever the capture length. No Dagster.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft
import scipy.signal

# Segments transformed at once: large enough for the FFT to run at full speed, small enough that
# the temporaries stay well under the size of a capture.
SEGMENTS_PER_BLOCK = 64


@functools.lru_cache(maxsize=32)
def hann_window(nperseg: int, dtype: str) -> tuple[np.ndarray, float]:
    """The periodic Hann window (as scipy.signal.welch uses) in dtype, and its sum of squares."""
    w = scipy.signal.get_window("hann", nperseg)
    return w.astype(dtype), float(np.dot(w, w))


def segment_power_rows(x: np.ndarray, nperseg: int, max_rows: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """|FFT|^2 of every Hann-windowed segment (hop nperseg - nperseg // 2, as scipy's default
    overlap), summed over consecutive segments into at most max_rows rows.

    Returns (rows, counts): rows is float64 (n_rows, nperseg) in natural FFT bin order, unscaled;
    counts[i] is how many segments row i sums. Complex64 input is transformed in complex64.
    """
    if x.ndim != 1 or x.shape[0] < nperseg:
        raise ValueError(f"need a 1-D array of at least nperseg={nperseg} samples, got shape {x.shape}")
    hop = nperseg - nperseg // 2
    real_dtype = "float32" if x.dtype in (np.complex64, np.float32) else "float64"
    window, _ = hann_window(nperseg, real_dtype)
    segments = np.lib.stride_tricks.sliding_window_view(x, nperseg)[::hop]
    n_segments = segments.shape[0]
    group = -(-n_segments // max(1, int(max_rows)))
    row_of = np.arange(n_segments) // group
    rows = np.zeros((int(row_of[-1]) + 1, nperseg), dtype=np.float64)
    for start in range(0, n_segments, SEGMENTS_PER_BLOCK):
        spectra = scipy.fft.fft(segments[start:start + SEGMENTS_PER_BLOCK] * window, axis=-1, overwrite_x=True)
        power = np.square(spectra.real)
        power += np.square(spectra.imag)
        block_rows = row_of[start:start + len(power)]
        firsts = np.flatnonzero(np.r_[True, block_rows[1:] != block_rows[:-1]])
        rows[block_rows[firsts]] += np.add.reduceat(power, firsts, axis=0, dtype=np.float64)
    return rows, np.bincount(row_of).astype(np.float64)
