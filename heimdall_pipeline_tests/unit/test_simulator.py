"""Simulated receiver network: determinism, power units, propagation, ground truth."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import subprocess
import sys
from datetime import datetime, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heimdall_pipeline.receivers import DEFAULT_RECEIVERS, Receiver
from heimdall_pipeline.capture import Capture
from heimdall_pipeline.propagation import PropagationModel, free_space_path_loss_db, haversine_km, path_loss_db, thermal_noise_power_dbm
from heimdall_pipeline.sources.simulator import (
    Transmitter,
    receiver_characteristics,
    signal_power_for_snr,
    simulate_capture,
    simulate_samples,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
RX = DEFAULT_RECEIVERS[0]
RX2 = DEFAULT_RECEIVERS[1]
TX = Transmitter(frequency_hz=7.1e6, eirp_dbm=40.0, latitude=48.0, longitude=10.0)
FS = 12000.0


def _power_dbm(x: np.ndarray) -> float:
    x = x.astype(np.complex128)
    return 10.0 * math.log10(float(np.mean(x.real**2 + x.imag**2)))


# ---------------------------------------------------------------- determinism


def test_same_session_and_receiver_give_identical_samples():
    a = simulate_capture("s-001", RX, TX, 7.1e6, FS, 2.0, T0)
    b = simulate_capture("s-001", RX, TX, 7.1e6, FS, 2.0, T0)
    assert isinstance(a, Capture)
    assert a.samples.dtype == np.complex64
    assert a.samples.shape == (24000,)
    assert np.array_equal(a.samples, b.samples)
    assert a.ground_truth == b.ground_truth


def test_different_receiver_session_or_salt_give_different_samples():
    base = simulate_capture("s-001", RX, TX, 7.1e6, FS, 1.0, T0).samples
    other_rx = simulate_capture("s-001", RX2, TX, 7.1e6, FS, 1.0, T0).samples
    other_session = simulate_capture("s-002", RX, TX, 7.1e6, FS, 1.0, T0).samples
    other_salt = simulate_capture("s-001", RX, TX, 7.1e6, FS, 1.0, T0, seed_salt="x").samples
    for other in (other_rx, other_session, other_salt):
        assert not np.array_equal(base, other)
        # independent noise, not a shifted copy: low correlation of the difference from the mean
        assert np.mean(np.abs(base - other) ** 2) > 0.1 * np.mean(np.abs(base) ** 2)


def test_same_receiver_id_same_characteristics_regardless_of_location():
    moved = dataclasses.replace(RX, latitude=10.0, longitude=20.0)
    assert receiver_characteristics(RX.id) == receiver_characteristics(moved.id)
    a = simulate_capture("s", RX, TX, 7.1e6, FS, 0.5, T0).ground_truth
    b = simulate_capture("s", moved, TX, 7.1e6, FS, 0.5, T0).ground_truth
    assert a["noise_figure_db"] == b["noise_figure_db"]
    assert a["lo_error_ppm"] == b["lo_error_ppm"]
    assert a["distance_km"] != b["distance_km"]


def test_seeding_does_not_depend_on_python_hash_randomisation():
    code = (
        "import hashlib\n"
        "from datetime import datetime, timezone\n"
        "from heimdall_pipeline.receivers import DEFAULT_RECEIVERS\n"
        "from heimdall_pipeline.sources.simulator import Transmitter, simulate_capture, PropagationModel\n"
        "c = simulate_capture('s-hash', DEFAULT_RECEIVERS[2], Transmitter(7.1e6, 40.0, 48.0, 10.0), 7.1e6,"
        " 12000.0, 0.25, datetime(2024, 1, 1, tzinfo=timezone.utc), PropagationModel(shadowing_sigma_db=6.0))\n"
        "print(hashlib.sha256(c.samples.tobytes()).hexdigest(), c.ground_truth['shadowing_db'])\n"
    )
    outputs = set()
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        outputs.add(out.stdout.strip())
    assert len(outputs) == 1
    here = simulate_capture("s-hash", DEFAULT_RECEIVERS[2], TX, 7.1e6, FS, 0.25, T0.replace(month=1, day=1, hour=0),
                            PropagationModel(shadowing_sigma_db=6.0))
    digest = hashlib.sha256(here.samples.tobytes()).hexdigest()
    assert outputs.pop().split()[0] == digest


def test_receiver_characteristics_ranges_and_spread():
    chars = [receiver_characteristics(f"rx{i}") for i in range(300)]
    nf = np.array([c.noise_figure_db for c in chars])
    ppm = np.array([c.lo_error_ppm for c in chars])
    ph = np.array([c.phase_rad for c in chars])
    assert nf.min() >= 6.0 and nf.max() <= 12.0
    assert ppm.min() >= -0.5 and ppm.max() <= 0.5
    assert ph.min() >= 0.0 and ph.max() < 2 * math.pi
    # really spread, not constant
    assert nf.std() > 1.0 and ppm.std() > 0.2 and ph.std() > 1.0
    assert len({c.noise_figure_db for c in chars}) == 300


# ---------------------------------------------------------------- power units


def test_noise_only_capture_power_matches_ktb_plus_noise_figure():
    # Transmitter tuned 1 MHz away: its carrier is outside the band, only thermal noise remains.
    for rx in DEFAULT_RECEIVERS[:4]:
        cap = simulate_capture("noise-check", rx, TX, 8.1e6, FS, 10.0, T0)
        gt = cap.ground_truth
        assert gt["signal_in_band"] is False
        expected = -174.0 + 10 * math.log10(FS) + gt["noise_figure_db"]
        assert gt["noise_power_dbm"] == pytest.approx(expected, abs=1e-9)
        assert abs(_power_dbm(cap.samples) - expected) < 0.1


@pytest.mark.parametrize("fs", [8000.0, 12000.0, 48000.0])
def test_thermal_noise_scales_with_sample_rate(fs):
    assert thermal_noise_power_dbm(fs, 0.0) == pytest.approx(-174.0 + 10 * math.log10(fs))
    x = simulate_samples(np.random.default_rng(3), fs, int(fs * 5), None, thermal_noise_power_dbm(fs, 8.0), 0.0)
    assert abs(_power_dbm(x) - thermal_noise_power_dbm(fs, 8.0)) < 0.1


@pytest.mark.parametrize("modulation", ["carrier", "fm_tone", "noise"])
def test_noiseless_signal_power_is_exact(modulation):
    x = simulate_samples(np.random.default_rng(1), FS, 60000, -93.0, None, 1234.5, modulation, phase=0.3)
    assert x.dtype == np.complex64
    assert abs(_power_dbm(x) - (-93.0)) < 0.01


def test_fm_tone_has_constant_envelope_and_carrier_has_exact_frequency():
    x = simulate_samples(np.random.default_rng(1), FS, 12000, -80.0, None, 321.0, "fm_tone",
                         deviation_hz=500.0, tone_hz=100.0)
    env = np.abs(x.astype(np.complex128))
    assert np.allclose(env, env[0], rtol=1e-5)
    c = simulate_samples(np.random.default_rng(1), FS, 12000, -80.0, None, 321.0, "carrier")
    spec = np.abs(np.fft.fft(c)) ** 2
    freqs = np.fft.fftfreq(12000, 1 / FS)
    assert freqs[np.argmax(spec)] == pytest.approx(321.0)


def test_noise_modulation_is_band_limited_around_offset():
    x = simulate_samples(np.random.default_rng(2), FS, 120000, -80.0, None, -2000.0, "noise", bandwidth_hz=500.0)
    spec = np.abs(np.fft.fft(x.astype(np.complex128))) ** 2
    freqs = np.fft.fftfreq(x.size, 1 / FS)
    inside = np.abs(freqs - (-2000.0)) <= 260.0
    assert spec[inside].sum() / spec.sum() > 0.99
    # and it fills the band: both halves carry power
    lower = (freqs > -2250) & (freqs < -2000)
    upper = (freqs > -2000) & (freqs < -1750)
    assert spec[lower].sum() > 0.3 * spec[inside].sum()
    assert spec[upper].sum() > 0.3 * spec[inside].sum()


# ---------------------------------------------------------------- frequency / ground truth


def test_ground_truth_is_consistent_and_json_serialisable():
    prop = PropagationModel(path_loss_exponent=3.0, shadowing_sigma_db=4.0)
    cap = simulate_capture("gt", RX, TX, 7.1e6 - 1500.0, FS, 1.0, T0, prop)
    gt = cap.ground_truth
    json.dumps(gt)
    json.dumps(cap.details)
    assert cap.source_kind == "simulated"
    assert cap.center_frequency_hz == 7.1e6 - 1500.0
    d = math.hypot(haversine_km(TX.latitude, TX.longitude, RX.latitude, RX.longitude),
                   (RX.altitude_m - TX.altitude_m) / 1000.0)
    assert gt["distance_km"] == pytest.approx(d)
    assert gt["path_loss_db"] == pytest.approx(path_loss_db(d, TX.frequency_hz, prop))
    assert gt["signal_power_dbm"] == pytest.approx(TX.eirp_dbm - gt["path_loss_db"] - gt["shadowing_db"])
    assert gt["snr_db"] == pytest.approx(gt["signal_power_dbm"] - gt["noise_power_dbm"])
    expected_offset = 1500.0 - (7.1e6 - 1500.0) * gt["lo_error_ppm"] * 1e-6
    assert gt["frequency_offset_hz"] == pytest.approx(expected_offset, abs=1e-9)
    assert gt["signal_in_band"] is True


def test_carrier_appears_at_the_ground_truth_offset_with_positive_sign():
    """Positive offset = exp(+2j pi f t) = above the centre. Checked by a plain FFT."""
    strong = Transmitter(frequency_hz=14.2e6 + 2000.0, eirp_dbm=60.0, latitude=48.0, longitude=10.0)
    cap = simulate_capture("sign", RX, strong, 14.2e6, FS, 10.0, T0)
    gt = cap.ground_truth
    assert gt["snr_db"] > 30
    assert 1990 < gt["frequency_offset_hz"] < 2010  # LO error is at most 0.5 ppm -> 7.1 Hz
    x = cap.samples.astype(np.complex128)
    spec = np.abs(np.fft.fft(x)) ** 2
    freqs = np.fft.fftfreq(x.size, 1 / FS)
    assert abs(freqs[np.argmax(spec)] - gt["frequency_offset_hz"]) <= FS / x.size
    # the LO error moves the carrier by -center*ppm: with 14.2 MHz it is visible
    assert gt["frequency_offset_hz"] == pytest.approx(2000.0 - 14.2e6 * gt["lo_error_ppm"] * 1e-6)


def test_signal_outside_the_band_is_not_added():
    cap = simulate_capture("oob", RX, TX, 7.1e6 + 7000.0, FS, 1.0, T0)
    assert cap.ground_truth["signal_in_band"] is False
    assert abs(_power_dbm(cap.samples) - cap.ground_truth["noise_power_dbm"]) < 0.2


# ---------------------------------------------------------------- propagation


def test_free_space_path_loss_reference_values():
    # 1 km at 100 MHz: 60 + 160 - 147.55
    assert free_space_path_loss_db(1.0, 100e6) == pytest.approx(72.45, abs=1e-9)
    model = PropagationModel(path_loss_exponent=2.8)
    assert path_loss_db(1.0, 100e6, model) == pytest.approx(72.45, abs=1e-9)
    assert path_loss_db(10.0, 100e6, model) == pytest.approx(72.45 + 28.0, abs=1e-9)
    assert path_loss_db(0.1, 100e6, model) == pytest.approx(72.45 - 20.0, abs=1e-9)  # free space below d0
    # exponent 2 is pure free space everywhere
    free = PropagationModel(path_loss_exponent=2.0)
    for d in (0.01, 1.0, 37.0, 900.0):
        assert path_loss_db(d, 7e6, free) == pytest.approx(free_space_path_loss_db(d, 7e6))


@settings(derandomize=True, max_examples=60, deadline=None)
@given(
    d1=st.floats(0.001, 5000.0),
    d2=st.floats(0.001, 5000.0),
    f=st.floats(1e5, 6e9),
    n=st.floats(1.5, 4.5),
)
def test_path_loss_is_monotonic_in_distance(d1, d2, f, n):
    model = PropagationModel(path_loss_exponent=n)
    lo, hi = sorted((d1, d2))
    assert path_loss_db(lo, f, model) <= path_loss_db(hi, f, model) + 1e-9
    if hi > lo * 1.001:
        assert path_loss_db(lo, f, model) < path_loss_db(hi, f, model)


def test_path_loss_vectorised_and_monotonic_on_a_grid():
    d = np.logspace(-3, 4, 500)
    pl = path_loss_db(d, 7e6, PropagationModel())
    assert pl.shape == d.shape
    assert np.all(np.diff(pl) > 0)


def test_haversine_known_distances():
    assert haversine_km(0.0, 0.0, 0.0, 1.0) == pytest.approx(111.195, abs=0.01)
    assert haversine_km(48.8566, 2.3522, 51.5074, -0.1278) == pytest.approx(343.5, abs=1.0)  # Paris-London
    assert haversine_km(10.0, 20.0, 10.0, 20.0) == 0.0
    lat = np.array([0.0, 45.0])
    assert haversine_km(lat, 0.0, lat, 1.0).shape == (2,)


def test_received_power_decreases_with_distance():
    near = Receiver(id="near", name="n", url="sim://near", kind="simulated", location_name="x",
                    latitude=48.0, longitude=10.5)
    far = dataclasses.replace(near, id="far", longitude=14.0)
    a = simulate_capture("d", near, TX, 7.1e6, FS, 0.1, T0).ground_truth
    b = simulate_capture("d", far, TX, 7.1e6, FS, 0.1, T0).ground_truth
    assert a["distance_km"] < b["distance_km"]
    assert a["signal_power_dbm"] > b["signal_power_dbm"]


def test_shadowing_statistics():
    sigma = 6.0
    prop = PropagationModel(shadowing_sigma_db=sigma)
    values = np.array([
        simulate_capture(f"sh-{i}", RX, TX, 7.1e6, FS, 0.01, T0, prop).ground_truth["shadowing_db"]
        for i in range(1500)
    ])
    n = values.size
    assert abs(values.mean()) < 4 * sigma / math.sqrt(n)
    assert abs(values.std(ddof=1) / sigma - 1.0) < 4 / math.sqrt(2 * (n - 1))
    # deterministic per (session, receiver) and different between receivers
    again = simulate_capture("sh-7", RX, TX, 7.1e6, FS, 0.01, T0, prop).ground_truth["shadowing_db"]
    assert again == values[7]
    other = simulate_capture("sh-7", RX2, TX, 7.1e6, FS, 0.01, T0, prop).ground_truth["shadowing_db"]
    assert other != values[7]
    # sigma 0 disables it
    assert simulate_capture("sh-7", RX, TX, 7.1e6, FS, 0.01, T0).ground_truth["shadowing_db"] == 0.0


def test_signal_power_for_snr_helper():
    assert signal_power_for_snr(10.0, -125.0) == -115.0


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(modulation="am"),
        dict(frequency_hz=0.0),
        dict(latitude=95.0),
        dict(longitude=-181.0),
        dict(modulation="noise", bandwidth_hz=0.0),
        dict(modulation="fm_tone", tone_hz=0.0),
    ],
)
def test_transmitter_validation(kwargs):
    base = dict(frequency_hz=7e6, eirp_dbm=30.0, latitude=0.0, longitude=0.0)
    base.update(kwargs)
    with pytest.raises(ValueError):
        Transmitter(**base)


@pytest.mark.parametrize("kwargs", [dict(path_loss_exponent=0.0), dict(reference_distance_km=-1.0),
                                    dict(shadowing_sigma_db=-1.0)])
def test_propagation_validation(kwargs):
    with pytest.raises(ValueError):
        PropagationModel(**kwargs)


@pytest.mark.parametrize("fs, duration", [(0.0, 1.0), (-5.0, 1.0), (12000.0, 0.0), (12000.0, float("nan"))])
def test_simulate_capture_refuses_bad_timing(fs, duration):
    with pytest.raises(ValueError):
        simulate_capture("s", RX, TX, 7.1e6, fs, duration, T0)


# ---------------------------------------------------------------- timing (TDoA ground truth)

NOISE_TX = Transmitter(frequency_hz=7.1e6 + 800.0, eirp_dbm=90.0, latitude=48.0, longitude=10.0,
                       modulation="noise", bandwidth_hz=1000.0)


def test_timed_capture_tags_fit_the_true_clock():
    from heimdall_pipeline.dsp.timing import fit_time_model

    cap = simulate_capture("s-time", RX, NOISE_TX, 7.1e6, FS, 12.0, T0)
    gt = cap.ground_truth
    chars = receiver_characteristics(RX.id)
    assert gt["sample_rate_error_ppm"] == chars.sample_rate_error_ppm
    assert gt["true_sample_rate_hz"] == pytest.approx(FS * (1 + chars.sample_rate_error_ppm * 1e-6))
    assert len(cap.gps_timestamps) == math.ceil(cap.samples.size / 512)
    assert [t.sample_index for t in cap.gps_timestamps] == list(range(0, cap.samples.size, 512))
    ages = {t.fix_age_s for t in cap.gps_timestamps}
    assert ages == {0, 1}  # a fresh fix every 2 s, stale tags in between
    model = fit_time_model(cap.gps_timestamps, cap.sample_rate_hz, cap.start_time, cap.samples.size)
    assert model.sample_rate_hz == pytest.approx(gt["true_sample_rate_hz"], abs=2e-3)
    assert abs(model.sample0_gps_ns - gt["sample0_gps_ns"]) < 200  # ns, from 100 ns rms tags
    assert 50 < model.timing_rms_ns < 150
    # stale tags carry the holdover drift: trusting them would be microseconds off
    stale = [t for t in cap.gps_timestamps if t.fix_age_s == 1]
    week_ns = 604_800 * 10**9
    week_start = gt["sample0_gps_ns"] - gt["sample0_gps_ns"] % week_ns
    errors = [abs(week_start + t.gps_seconds * 10**9 + t.gps_nanoseconds - gt["sample0_gps_ns"]
                  - round(t.sample_index / gt["true_sample_rate_hz"] * 1e9)) for t in stale]
    assert max(errors) > 1000


def test_receivers_have_their_own_sample_clocks():
    errors = [receiver_characteristics(r.id).sample_rate_error_ppm for r in DEFAULT_RECEIVERS]
    assert len(set(errors)) == len(errors) and all(-100 <= e <= 100 for e in errors)
    # receivers whose clock is off by more than one sample per 2-s fix interval exist among them
    assert any(abs(e) * 1e-6 * FS * 2.0 > 1.0 for e in errors)


@pytest.mark.parametrize("receiver", DEFAULT_RECEIVERS[:3], ids=lambda r: r.id)
def test_noise_waveform_arrives_after_the_true_propagation_delay(receiver):
    """Every receiver hears the one session waveform, delayed by distance / c to the sub-sample."""
    from heimdall_pipeline.sources.simulator import transmitted_waveform

    duration = 2.0
    cap = simulate_capture("s-delay", receiver, NOISE_TX, 7.1e6, FS, duration, T0)
    gt = cap.ground_truth
    assert gt["propagation_delay_s"] == pytest.approx(gt["distance_km"] / 299_792.458)
    wave = transmitted_waveform("s-delay", NOISE_TX, FS, duration)
    t = np.arange(cap.samples.size) / gt["true_sample_rate_hz"]
    envelope = np.abs(cap.samples.astype(np.complex128))

    def mismatch(delay_s):
        model = np.abs(wave.at(t - delay_s).astype(np.complex128))
        model *= np.sqrt(np.mean(envelope**2) / np.mean(model**2))
        return float(np.sqrt(np.mean((envelope - model) ** 2) / np.mean(envelope**2)))

    true_delay = gt["propagation_delay_s"]
    assert mismatch(true_delay) < 0.01
    assert mismatch(true_delay + 20e-6) > 2 * mismatch(true_delay)  # 20 us = 0.24 sample: resolved
    assert mismatch(true_delay - 20e-6) > 2 * mismatch(true_delay)


def test_same_session_gives_the_same_waveform_and_tags():
    a = simulate_capture("s-det", RX, NOISE_TX, 7.1e6, FS, 1.0, T0)
    b = simulate_capture("s-det", RX, NOISE_TX, 7.1e6, FS, 1.0, T0)
    assert np.array_equal(a.samples, b.samples) and a.gps_timestamps == b.gps_timestamps
    assert a.ground_truth == b.ground_truth
    json.dumps(a.ground_truth)
