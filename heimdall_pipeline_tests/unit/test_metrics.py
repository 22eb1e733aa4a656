"""Signal metrics against the simulator's ground truth, detection rule, and bad captures."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heimdall_pipeline.dsp.metrics import (
    DETECTION_SNR_THRESHOLD_DB,
    CaptureTooShortError,
    EmptyCaptureError,
    InvalidCaptureError,
    InvalidSampleRateError,
    NonFiniteSamplesError,
    SampleDtypeError,
    SampleShapeError,
    SignalMetrics,
    SilentCaptureError,
    compute_metrics,
    welch_psd,
)
from heimdall_pipeline.receivers import DEFAULT_RECEIVERS
from heimdall_pipeline.propagation import PropagationModel, path_loss_db, slant_distance_km, thermal_noise_power_dbm
from heimdall_pipeline.sources.simulator import (
    Transmitter,
    receiver_characteristics,
    simulate_capture,
    simulate_samples,
)

FS = 12000.0
NOISE_DBM = thermal_noise_power_dbm(FS, 8.0)
T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)


def _capture(seed: int, snr_db: float | None, offset_hz: float, fs: float = FS, duration_s: float = 10.0,
             modulation: str = "carrier", **kw) -> tuple[np.ndarray, float]:
    """Samples with a known full-band SNR; returns (samples, noise_power_dbm)."""
    rng = np.random.default_rng(seed)
    noise = thermal_noise_power_dbm(fs, 8.0)
    signal = None if snr_db is None else noise + snr_db
    x = simulate_samples(rng, fs, int(round(fs * duration_s)), signal, noise, offset_hz, modulation,
                         phase=float(rng.uniform(0, 2 * math.pi)), **kw)
    return x, noise


# ---------------------------------------------------------------- accuracy (carrier)


@pytest.mark.parametrize("snr_db", [3.0, 4.5, 6.0, 10.0, 20.0, 30.0, 40.0])
def test_carrier_accuracy_grid(snr_db):
    for seed in range(5):
        offset = float(np.random.default_rng(1000 + seed).uniform(-5500, 5500))
        x, noise = _capture(seed, snr_db, offset)
        m = compute_metrics(x, FS)
        assert m.signal_detected
        assert abs(m.snr_db - snr_db) <= 0.5
        assert abs(m.signal_power_db - (noise + snr_db)) <= 0.5
        assert abs(m.frequency_offset_hz - offset) <= 1.0
        assert abs(m.noise_power_db - noise) <= 0.2


@settings(derandomize=True, max_examples=40, deadline=None)
@given(
    snr_db=st.floats(3.0, 40.0),
    offset_frac=st.floats(-0.45, 0.45),
    fs=st.sampled_from([8000.0, 12000.0, 12001.135, 16000.0, 24000.0, 48000.0]),
    duration_s=st.floats(0.5, 10.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_carrier_accuracy_property(snr_db, offset_frac, fs, duration_s, seed):
    offset = offset_frac * fs
    x, noise = _capture(seed, snr_db, offset, fs=fs, duration_s=duration_s)
    m = compute_metrics(x, fs)
    assert m.signal_detected
    assert abs(m.snr_db - snr_db) <= 0.5
    assert abs(m.signal_power_db - (noise + snr_db)) <= 0.5
    assert abs(m.frequency_offset_hz - offset) <= 1.0


@settings(derandomize=True, max_examples=40, deadline=None)
@given(
    snr_db=st.floats(-30.0, 0.0),
    offset_frac=st.floats(-0.45, 0.45),
    fs=st.sampled_from([8000.0, 12000.0, 48000.0]),
    duration_s=st.floats(0.5, 10.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_no_signal_at_or_below_0_db_property(snr_db, offset_frac, fs, duration_s, seed):
    x, noise = _capture(seed, snr_db, offset_frac * fs, fs=fs, duration_s=duration_s)
    m = compute_metrics(x, fs)
    assert not m.signal_detected
    assert m.snr_db is None and m.signal_power_db is None and m.frequency_offset_hz is None
    assert m.bandwidth_hz is None
    assert abs(m.noise_power_db - noise) <= 0.5
    assert m.estimated_snr_db < DETECTION_SNR_THRESHOLD_DB


@pytest.mark.parametrize("snr_db", [0.0, -1.0, -3.0, -10.0, None])
def test_no_signal_reports_noise_power(snr_db):
    for seed in range(5):
        x, noise = _capture(seed, snr_db, 777.0)
        m = compute_metrics(x, FS)
        assert m.signal_detected is False
        assert m.snr_db is None and m.signal_power_db is None and m.frequency_offset_hz is None
        assert abs(m.noise_power_db - noise) <= 0.1
        assert m.noise_floor_db_hz == pytest.approx(m.noise_power_db - 10 * math.log10(FS))
        assert m.psd_peak_db_hz >= m.noise_floor_db_hz


def test_end_to_end_with_simulate_capture_ground_truth():
    """Real pipeline path: simulate_capture -> compute_metrics, compared with ground_truth."""
    prop = PropagationModel()
    tx_lat, tx_lon = 48.0, 10.0
    results = []
    for rx in DEFAULT_RECEIVERS:
        # choose EIRP so this receiver sees a 15 dB full-band SNR
        d = slant_distance_km(tx_lat, tx_lon, 0.0, rx.latitude, rx.longitude, rx.altitude_m)
        nf = receiver_characteristics(rx.id).noise_figure_db
        eirp = thermal_noise_power_dbm(FS, nf) + 15.0 + path_loss_db(d, 7.1e6 + 300.0, prop)
        tx = Transmitter(7.1e6 + 300.0, eirp, tx_lat, tx_lon)
        cap = simulate_capture("e2e", rx, tx, 7.1e6, FS, 5.0, T0, prop)
        gt = cap.ground_truth
        m = compute_metrics(cap.samples, cap.sample_rate_hz)
        results.append(m)
        assert gt["snr_db"] == pytest.approx(15.0)
        assert m.signal_detected
        assert abs(m.snr_db - gt["snr_db"]) <= 0.5
        assert abs(m.signal_power_db - gt["signal_power_dbm"]) <= 0.5
        assert abs(m.noise_power_db - gt["noise_power_dbm"]) <= 0.2
        assert abs(m.frequency_offset_hz - gt["frequency_offset_hz"]) <= 1.0
    json.dumps([r.as_dict() for r in results])


def test_dc_carrier_is_not_removed_by_detrending():
    x, noise = _capture(11, 10.0, 0.0)
    m = compute_metrics(x, FS)
    assert m.signal_detected
    assert abs(m.snr_db - 10.0) <= 0.5
    assert abs(m.frequency_offset_hz) <= 1.0


@pytest.mark.parametrize("offset", [-0.499 * FS, 0.4995 * FS])
def test_carrier_at_the_band_edge_wraps_correctly(offset):
    x, noise = _capture(5, 20.0, offset)
    m = compute_metrics(x, FS)
    assert m.signal_detected
    assert abs(m.snr_db - 20.0) <= 0.5
    err = (m.frequency_offset_hz - offset + FS / 2) % FS - FS / 2
    assert abs(err) <= 1.0


def test_noiseless_carrier():
    x = simulate_samples(np.random.default_rng(0), FS, 12000, -90.0, None, 1000.25)
    m = compute_metrics(x, FS)
    assert m.signal_detected
    assert m.snr_db > 60
    assert abs(m.signal_power_db - (-90.0)) <= 0.05
    assert abs(m.frequency_offset_hz - 1000.25) <= 0.1


def test_complex128_gives_the_same_answer():
    x, _ = _capture(3, 12.0, -1234.0)
    a = compute_metrics(x, FS)
    b = compute_metrics(x.astype(np.complex128), FS)
    assert a.signal_detected and b.signal_detected
    assert abs(a.snr_db - b.snr_db) < 1e-3
    assert abs(a.frequency_offset_hz - b.frequency_offset_hz) < 1e-3


def test_explicit_nperseg_and_result_is_frozen():
    x, _ = _capture(4, 10.0, 2500.0)
    m = compute_metrics(x, FS, nperseg=256)
    assert m.nperseg == 256 and m.n_samples == x.size and m.sample_rate_hz == FS
    assert abs(m.snr_db - 10.0) <= 0.5
    assert isinstance(m, SignalMetrics)
    with pytest.raises(AttributeError):
        m.snr_db = 1.0  # type: ignore[misc]
    assert compute_metrics(x, FS, nperseg=256) == m


# ---------------------------------------------------------------- other modulations (looser)


def test_fm_tone_small_index_offset_and_power():
    for seed in range(3):
        x, noise = _capture(seed, 10.0, 1500.0, modulation="fm_tone", deviation_hz=50.0, tone_hz=500.0)
        m = compute_metrics(x, FS)
        assert m.signal_detected
        assert abs(m.frequency_offset_hz - 1500.0) <= 1.0  # carrier is the strongest line (beta = 0.1)
        assert abs(m.signal_power_db - (noise + 10.0)) <= 1.0
        assert abs(m.snr_db - 10.0) <= 1.0


@pytest.mark.parametrize("snr_db", [3.0, 10.0, 30.0])
def test_fm_tone_wide_power(snr_db):
    x, noise = _capture(7, snr_db, -800.0, modulation="fm_tone", deviation_hz=500.0, tone_hz=100.0)
    m = compute_metrics(x, FS)
    assert m.signal_detected
    assert abs(m.signal_power_db - (noise + snr_db)) <= 1.0
    assert abs(m.snr_db - snr_db) <= 1.0
    assert 900.0 <= m.bandwidth_hz <= 2500.0  # Carson: 2 * (500 + 100) = 1200 Hz


@pytest.mark.parametrize("snr_db", [3.0, 10.0, 30.0])
def test_noise_like_signal_power(snr_db):
    x, noise = _capture(8, snr_db, 2000.0, modulation="noise", bandwidth_hz=500.0)
    m = compute_metrics(x, FS)
    assert m.signal_detected
    assert abs(m.signal_power_db - (noise + snr_db)) <= 1.0
    assert abs(m.snr_db - snr_db) <= 1.0
    assert abs(m.frequency_offset_hz - 2000.0) <= 260.0  # strongest line lies inside the band
    assert 400.0 <= m.bandwidth_hz <= 800.0


def test_second_distant_signal_is_not_counted():
    x, noise = _capture(9, 20.0, -3000.0)
    y = simulate_samples(np.random.default_rng(99), FS, x.size, noise + 10.0, None, 3000.0)
    m = compute_metrics(x + y, FS)
    assert m.signal_detected
    assert abs(m.frequency_offset_hz - (-3000.0)) <= 1.0
    assert abs(m.signal_power_db - (noise + 20.0)) <= 0.5
    assert abs(m.noise_power_db - noise) <= 0.2


# ---------------------------------------------------------------- PSD


def test_welch_psd_integrates_to_total_power():
    x, noise = _capture(1, 10.0, 100.0)
    f, p = welch_psd(x, FS)
    assert np.all(np.diff(f) > 0) and f[0] < 0 < f[-1]
    total = float(np.sum(p) * (f[1] - f[0]))
    expected = float(np.mean(np.abs(x.astype(np.complex128)) ** 2))
    assert abs(10 * math.log10(total / expected)) < 0.05
    m = compute_metrics(x, FS)
    assert m.psd_peak_db_hz == pytest.approx(10 * math.log10(p.max()))
    assert abs(m.psd_peak_frequency_hz - 100.0) <= (f[1] - f[0])


# ---------------------------------------------------------------- bad captures


@pytest.mark.parametrize(
    "samples, fs, error, words",
    [
        (np.zeros(0, dtype=np.complex64), FS, EmptyCaptureError, "empty"),
        (np.array([1 + 1j, np.nan] * 500, dtype=np.complex64), FS, NonFiniteSamplesError, "NaN"),
        (np.array([1 + 1j, complex(np.inf, 0)] * 500, dtype=np.complex128), FS, NonFiniteSamplesError, "Inf"),
        (np.ones(1000, dtype=np.float32), FS, SampleDtypeError, "float32"),
        (np.ones(1000, dtype=np.int16), FS, SampleDtypeError, "complex64"),
        ([1 + 1j] * 1000, FS, SampleDtypeError, "numpy array"),
        (np.ones((2, 1000), dtype=np.complex64), FS, SampleShapeError, "1-D"),
        (np.ones(100, dtype=np.complex64), FS, CaptureTooShortError, "100 samples"),
        (np.ones(1000, dtype=np.complex64), 0.0, InvalidSampleRateError, "sample rate"),
        (np.ones(1000, dtype=np.complex64), -12000.0, InvalidSampleRateError, "positive"),
        (np.ones(1000, dtype=np.complex64), float("nan"), InvalidSampleRateError, "sample rate"),
        (np.zeros(1000, dtype=np.complex64), FS, SilentCaptureError, "zero"),
    ],
)
def test_bad_captures_raise(samples, fs, error, words):
    with pytest.raises(error, match=words) as info:
        compute_metrics(samples, fs)
    assert isinstance(info.value, InvalidCaptureError)
    assert isinstance(info.value, ValueError)


def test_nperseg_larger_than_capture_is_refused():
    x, _ = _capture(0, 10.0, 0.0, duration_s=0.1)
    with pytest.raises(CaptureTooShortError, match="nperseg"):
        compute_metrics(x, FS, nperseg=4096)
    with pytest.raises(CaptureTooShortError):
        welch_psd(x, FS, nperseg=8)


@pytest.mark.parametrize("nperseg", [None, 512])
def test_noise_floor_is_unbiased_for_short_captures(nperseg):
    """The median of chi-square PSD bins is low by ~0.05-0.1 dB here unless corrected."""
    errors = []
    for seed in range(200):
        x, noise = _capture(seed, None, 0.0, fs=8000.0, duration_s=0.5)
        errors.append(compute_metrics(x, 8000.0, nperseg=nperseg).noise_power_db - noise)
    errors = np.array(errors)
    assert abs(errors.mean()) < 4 * errors.std() / math.sqrt(errors.size) + 0.005
    assert abs(errors.mean()) < 0.03


def test_merge_gap_validation():
    x, _ = _capture(0, 10.0, 0.0, duration_s=0.5)
    with pytest.raises(ValueError, match="merge_gap_hz"):
        compute_metrics(x, FS, merge_gap_hz=-1.0)


# ---------------------------------------------------------------- wide FM: the whole line comb


@pytest.mark.parametrize("tone_hz, deviation_hz", [
    (1000.0, 2500.0),  # the case: lines 1 kHz apart, measured 6 dB low before
    (3000.0, 5000.0), (3000.0, 1000.0), (2200.0, 5000.0), (1700.0, 5000.0),
    (700.0, 5000.0), (600.0, 5000.0), (2000.0, 4000.0), (150.0, 5000.0),
    (400.0, 3500.0), (300.0, 5000.0),  # at 6 dB only the outer sideband groups show, each a few lines
])
@pytest.mark.parametrize("snr_db", [6.0, 30.0])
def test_wide_fm_power_is_the_whole_signal(tone_hz, deviation_hz, snr_db):
    x, noise = _capture(11, snr_db, 437.0, modulation="fm_tone", deviation_hz=deviation_hz, tone_hz=tone_hz,
                        duration_s=5.0)
    m = compute_metrics(x, FS)
    assert m.signal_detected
    assert abs(m.signal_power_db - (noise + snr_db)) <= 0.5
    assert abs(m.snr_db - snr_db) <= 0.5


@pytest.mark.parametrize("separation_hz", [1500.0, 2000.0, 3000.0, 4500.0])
@pytest.mark.parametrize("weaker_db", [1.0, 6.0])
def test_two_carriers_a_few_khz_apart_are_two_signals(separation_hz, weaker_db):
    x, noise = _capture(12, 20.0, -separation_hz / 2, duration_s=5.0)
    y = simulate_samples(np.random.default_rng(98), FS, x.size, noise + 20.0 - weaker_db, None, separation_hz / 2,
                         phase=1.0)
    m = compute_metrics(x + y, FS)
    assert m.signal_detected
    assert abs(m.frequency_offset_hz - (-separation_hz / 2)) <= 1.0
    assert abs(m.signal_power_db - (noise + 20.0)) <= 0.5


def test_fm_with_a_third_unrelated_carrier_keeps_only_the_fm():
    x, noise = _capture(13, 20.0, -1500.0, modulation="fm_tone", deviation_hz=2500.0, tone_hz=1000.0,
                        duration_s=5.0)
    y = simulate_samples(np.random.default_rng(97), FS, x.size, noise + 10.0, None, 4730.0, phase=0.4)
    m = compute_metrics(x + y, FS)
    assert abs(m.signal_power_db - (noise + 20.0)) <= 0.5
