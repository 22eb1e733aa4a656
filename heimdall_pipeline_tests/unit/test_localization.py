"""Transmitter localization: model, non-detections as bounds, honest uncertainty, accuracy."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import numpy as np
import pytest

from heimdall_pipeline import propagation
from heimdall_pipeline.rss import LocalizationResult, PowerObservation, localize
from heimdall_pipeline.accuracy import rss as accuracy
from heimdall_pipeline.rss import estimator as rss
from heimdall_pipeline.accuracy.rss import evaluate_accuracy, synthetic_trial
from heimdall_pipeline.db.localization_rows import rss_row
from heimdall_pipeline.plots.localization import plot_localization
from heimdall_pipeline.propagation import free_space_path_loss_db, haversine_km
from heimdall_pipeline.receivers import DEFAULT_RECEIVERS

F_HZ = 145.5e6


def _exact_observations(lat: float, lon: float, eirp: float, n: float, detect=None, noise_dbm: float = -125.0):
    """Noise-free received powers of the log-distance model (ground-level transmitter)."""
    obs = []
    for r in DEFAULT_RECEIVERS:
        d = math.sqrt(float(haversine_km(lat, lon, r.latitude, r.longitude)) ** 2 + (r.altitude_m / 1000) ** 2
                      + propagation.MIN_DISTANCE_KM**2)
        p = eirp - float(free_space_path_loss_db(1.0, F_HZ)) - 10 * n * math.log10(d)
        if detect is None or r.id in detect:
            obs.append(PowerObservation.detection(r.id, r.latitude, r.longitude, F_HZ, p, noise_dbm, r.altitude_m))
        else:
            obs.append(PowerObservation.non_detection(r.id, r.latitude, r.longitude, F_HZ, noise_dbm, r.altitude_m))
    return obs


# ---------------------------------------------------------------- not localizable


def test_fewer_than_three_detections_is_not_localizable_and_says_why():
    obs = _exact_observations(47.0, 5.0, 40.0, 2.8, detect={"f5len", "hb9q"})
    res = localize(obs)
    assert res.localizable is False
    assert res.reason == "only 2 receivers detected the signal (f5len, hb9q); 3 are needed"
    assert res.latitude is None and res.longitude is None and res.ellipse_semi_major_km is None
    assert res.receivers_used == ("f5len", "hb9q")
    assert set(res.receivers_as_bounds) == {"ph0m", "g0mjw", "dk0ghz", "oe3xec", "hb9sl"}
    assert res.contains(47.0, 5.0) is False
    with pytest.raises(ValueError):
        res.distance_km(47.0, 5.0)
    none = localize(_exact_observations(47.0, 5.0, 40.0, 2.8, detect=set()))
    assert not none.localizable and "no receiver detected" in none.reason
    one = localize(_exact_observations(47.0, 5.0, 40.0, 2.8, detect={"ph0m"}))
    assert one.reason == "only 1 receiver detected the signal (ph0m); 3 are needed"


def test_observation_validation():
    with pytest.raises(ValueError, match="signal_power_dbm"):
        PowerObservation("a", 47.0, 8.0, F_HZ, True, None)
    with pytest.raises(ValueError, match="noise_power_dbm"):
        PowerObservation("a", 47.0, 8.0, F_HZ, False, None, None)
    with pytest.raises(ValueError, match="position"):
        PowerObservation.detection("a", 95.0, 8.0, F_HZ, -90.0)
    with pytest.raises(ValueError, match="frequency"):
        PowerObservation.detection("a", 47.0, 8.0, 0.0, -90.0)


def test_from_metrics_duck_typed():
    class M:
        signal_detected, signal_power_db, noise_power_db = False, None, -124.5

    rx = DEFAULT_RECEIVERS[3]
    o = PowerObservation.from_metrics(rx, M, F_HZ)
    assert (o.receiver_id, o.detected, o.noise_power_dbm, o.altitude_m) == ("hb9q", False, -124.5, 410.0)


# ---------------------------------------------------------------- model and solver


def test_noise_free_observations_recover_position_eirp_and_exponent():
    obs = _exact_observations(49.7, 6.1, 43.0, 3.1)
    res = localize(obs, shadowing_sigma_db=0.0)
    assert res.localizable and res.reason is None
    assert res.distance_km(49.7, 6.1) < 0.05
    assert res.eirp_dbm == pytest.approx(43.0, abs=0.02)
    assert res.path_loss_exponent == pytest.approx(3.1, abs=0.002)
    assert max(abs(v) for v in res.residuals_db.values()) < 1e-3
    assert res.contains(49.7, 6.1)
    assert res.receivers_used == tuple(r.id for r in DEFAULT_RECEIVERS)
    assert res.receivers_as_bounds == ()
    assert res.solve_time_s > 0.0  # the solve is timed for `heimdall bench`; speed is never asserted here


def test_exponent_is_bounded():
    res = localize(_exact_observations(48.0, 5.0, 60.0, 5.5), shadowing_sigma_db=0.0)
    assert res.localizable
    assert 1.6 <= res.path_loss_exponent <= 4.5
    assert any("bound" in w for w in res.warnings)


def test_analytic_jacobian_matches_finite_differences():
    obs = _exact_observations(47.5, 4.0, 40.0, 2.7, detect={"f5len", "ph0m", "g0mjw", "hb9q", "oe3xec"})
    # perturb so that a non-detection bound is violated somewhere along the path
    lat = np.array([o.latitude for o in obs])
    lon = np.array([o.longitude for o in obs])
    det = np.array([o.detected for o in obs])
    fspl = free_space_path_loss_db(1.0, np.full(len(obs), F_HZ))
    y = np.array([o.signal_power_dbm if o.detected else o.noise_power_dbm + 3.0 for o in obs]) + fspl
    problem = rss._Problem(lat, lon, det, y, fspl, np.full(len(obs), 0.09), 6.0, (1.6, 4.5), use_prior=True)
    for p in ([120.0, -80.0, 40.0, 2.7], [-500.0, 300.0, 70.0, 4.0], [30.0, 10.0, 20.0, 1.9]):
        p = np.array(p)
        r, J = rss._normalised_and_jacobian(problem, p, 48.0, 6.0)
        num = np.empty_like(J)
        for k in range(4):
            h = np.zeros(4)
            h[k] = 1e-5 * max(1.0, abs(p[k]))
            num[:, k] = (rss._normalised_and_jacobian(problem, p + h, 48.0, 6.0)[0]
                         - rss._normalised_and_jacobian(problem, p - h, 48.0, 6.0)[0]) / (2 * h[k])
        assert np.allclose(J, num, atol=1e-6)


def test_non_detections_are_one_sided_bounds():
    # Three detections plus four tight bounds (silent receivers just below detection): satisfied bounds
    # contribute exactly zero, and the solution respects them.
    rng = np.random.default_rng(11)
    sampler = accuracy.hull_sampler(DEFAULT_RECEIVERS)
    done = 0
    while done < 8:
        lat, lon = sampler(rng)
        n = float(rng.uniform(2.2, 3.6))
        powers = np.array([o.signal_power_dbm for o in _exact_observations(lat, lon, 0.0, n)])
        order, noise = np.sort(powers)[::-1], -125.0
        eirp = noise + 3.0 - order[3] - 0.5  # 4th strongest just below detection
        if order[2] + eirp < noise + 6.0:
            continue
        detect = {r.id for r, p in zip(DEFAULT_RECEIVERS, powers) if p + eirp > noise + 3.0}
        obs = _exact_observations(lat, lon, eirp, n, detect=detect, noise_dbm=noise)
        res = localize(obs, shadowing_sigma_db=0.0)
        assert res.localizable and len(res.receivers_used) == 3 and len(res.receivers_as_bounds) == 4
        assert all(0.0 <= res.residuals_db[rid] < 0.1 for rid in res.receivers_as_bounds)
        done += 1


def test_a_violated_bound_pushes_the_estimate_away():
    # All receivers hear the transmitter except hb9q, which reports silence 10 dB below what the
    # model predicts there: the bound is not ignored, the estimate moves away from hb9q.
    obs = _exact_observations(47.0, 5.5, 40.0, 2.8)
    i = next(k for k, o in enumerate(obs) if o.receiver_id == "hb9q")
    o = obs[i]
    silent = PowerObservation.non_detection(o.receiver_id, o.latitude, o.longitude, F_HZ,
                                            o.signal_power_dbm - 13.0, o.altitude_m)
    with_bound = localize(obs[:i] + [silent] + obs[i + 1:], shadowing_sigma_db=3.0)
    without = localize(obs[:i] + obs[i + 1:], shadowing_sigma_db=3.0)
    hb9q = (o.latitude, o.longitude)
    assert "hb9q" in with_bound.receivers_as_bounds and "hb9q" not in with_bound.receivers_used
    assert with_bound.distance_km(*hb9q) > without.distance_km(*hb9q) + 20.0
    assert without.distance_km(47.0, 5.5) < 1.0


def test_ellipse_geometry_and_contains():
    res = LocalizationResult(True, latitude=48.0, longitude=8.0, ellipse_semi_major_km=100.0,
                             ellipse_semi_minor_km=20.0, ellipse_orientation_deg=90.0)  # major axis east-west
    dlon_90km = math.degrees(90.0 / (propagation.EARTH_RADIUS_KM * math.cos(math.radians(48.0))))
    dlat_90km = math.degrees(90.0 / propagation.EARTH_RADIUS_KM)
    assert res.contains(48.0, 8.0 + dlon_90km)
    assert res.contains(48.0, 8.0 - dlon_90km)
    assert not res.contains(48.0 + dlat_90km, 8.0)
    plat, plon = res.ellipse_polygon(73)
    d = haversine_km(48.0, 8.0, plat, plon)
    assert d.max() == pytest.approx(100.0, rel=0.01) and d.min() == pytest.approx(20.0, rel=0.01)


def test_result_is_json_serialisable():
    res = localize(_exact_observations(46.5, 3.0, 35.0, 2.5), shadowing_sigma_db=6.0)
    json.dumps(res.to_dict())


def test_plot_returns_png():
    obs = _exact_observations(50.0, 3.0, 40.0, 2.8, detect={"f5len", "ph0m", "g0mjw", "hb9q", "dk0ghz"})
    res = localize(obs, shadowing_sigma_db=6.0)
    png = plot_localization(res, obs, truth=(50.0, 3.0))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    bad = localize(obs[:2])
    assert plot_localization(bad, obs[:2])[:4] == b"\x89PNG"


# ---------------------------------------------------------------- accuracy (direct power observations)


def test_accuracy_without_shadowing_median_below_1_km():
    report = evaluate_accuracy(trials=200, seed=20240501, shadowing_sigma_db=0.0)
    print(f"\nsigma=0: median {report.median_error_km:.2f} km, p90 {report.p90_error_km:.2f} km, "
          f"coverage {report.coverage:.3f}, {report.mean_solve_cpu_s * 1e3:.1f} ms CPU/solve")
    assert report.localized == 200
    assert report.median_error_km < 1.0
    assert report.coverage >= 0.9


def test_accuracy_with_6_db_shadowing_has_honest_95_percent_ellipse():
    report = evaluate_accuracy(trials=200, seed=20240502, shadowing_sigma_db=6.0)
    print(f"\nsigma=6: median {report.median_error_km:.1f} km, p90 {report.p90_error_km:.1f} km, "
          f"coverage {report.coverage:.3f}, median semi-major {report.median_semi_major_km:.0f} km, "
          f"{report.mean_solve_cpu_s * 1e3:.1f} ms CPU/solve")
    assert report.localized == 200
    assert report.coverage >= 0.90
    assert report.median_error_km < 400.0  # errors are large under 6 dB shadowing, but bounded


def test_synthetic_trials_meet_the_snr_requirement():
    rng = np.random.default_rng(5)
    for _ in range(50):
        t = synthetic_trial(rng, DEFAULT_RECEIVERS, shadowing_sigma_db=6.0)
        snrs = [o.signal_power_dbm - o.noise_power_dbm for o in t.observations if o.detected]
        assert sum(s >= 10.0 - 0.1 for s in snrs) >= 5


# ---------------------------------------------------------------- end to end: simulator -> metrics -> localize


def test_end_to_end_simulated_captures_without_shadowing():
    from heimdall_pipeline.dsp.metrics import compute_metrics
    from heimdall_pipeline.propagation import PropagationModel, path_loss_db, slant_distance_km, thermal_noise_power_dbm
    from heimdall_pipeline.sources.simulator import (
        Transmitter,
        receiver_characteristics,
        simulate_capture,
    )

    fs, t0 = 12_000.0, datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    rng = np.random.default_rng(31)
    sampler = accuracy.hull_sampler(DEFAULT_RECEIVERS)
    noise = np.array([thermal_noise_power_dbm(fs, receiver_characteristics(r.id).noise_figure_db)
                      for r in DEFAULT_RECEIVERS])
    errors = []
    for k in range(30):
        lat, lon = sampler(rng)
        prop = PropagationModel(path_loss_exponent=float(rng.uniform(2.0, 4.0)))
        pl = np.array([path_loss_db(slant_distance_km(lat, lon, 0.0, r.latitude, r.longitude, r.altitude_m), F_HZ, prop)
                       for r in DEFAULT_RECEIVERS])
        snr_at_0dbm = -pl - noise
        eirp = float(10.0 + rng.uniform(0.0, 15.0) - np.sort(snr_at_0dbm)[::-1][4])  # >= 5 receivers at >= 10 dB
        tx = Transmitter(frequency_hz=F_HZ, eirp_dbm=eirp, latitude=lat, longitude=lon,
                         modulation=("carrier", "fm_tone")[k % 2])
        obs = []
        for r in DEFAULT_RECEIVERS:
            cap = simulate_capture(f"loc-e2e-{k}", r, tx, F_HZ, fs, 1.0, t0, prop)
            m = compute_metrics(cap.samples, cap.sample_rate_hz)
            obs.append(PowerObservation.from_metrics(r, m, F_HZ))
        assert sum(o.detected for o in obs) >= 5
        res = localize(obs, shadowing_sigma_db=0.0)
        assert res.localizable
        errors.append(res.distance_km(lat, lon))
    print(f"\nend-to-end sigma=0: median {np.median(errors):.2f} km, p90 {np.percentile(errors, 90):.2f} km")
    assert np.median(errors) < 1.0


# ---------------------------------------------------------------- rows in dBm only (power units)


def _rows_for(truth_lat: float, truth_lon: float, uncalibrated: set[str]):
    from heimdall_pipeline.db.measurements_repo import MeasurementRow

    rows = []
    for r in DEFAULT_RECEIVERS:
        d = haversine_km(truth_lat, truth_lon, r.latitude, r.longitude)
        power = 50.0 - free_space_path_loss_db(1.0, F_HZ) - 30.0 * math.log10(max(d, 1e-3))
        common = dict(time=datetime(2025, 1, 1, tzinfo=timezone.utc), session_key="s", receiver_id=r.id,
                      frequency_mhz=F_HZ / 1e6, sample_rate_khz=12.0, samples_count=12000, signal_detected=True)
        if r.id in uncalibrated:  # dBFS figures only
            rows.append(MeasurementRow(power_unit="dBFS", signal_power_dbfs=power - 100.0, noise_power_dbfs=-150.0, **common))
        else:
            rows.append(MeasurementRow(power_unit="dBm", signal_power_dbm=power, noise_power_dbm=-130.0,
                                       psd_dbm_hz=-160.0, **common))
    return rows


def test_localization_uses_dbm_rows_and_names_uncalibrated_ones():
    from heimdall_pipeline.assets.localization import localize_session

    registry = {r.id: r for r in DEFAULT_RECEIVERS}
    left_out = {DEFAULT_RECEIVERS[0].id, DEFAULT_RECEIVERS[1].id}
    result, observations = localize_session(_rows_for(48.5, 7.5, left_out), registry, 0.0)
    assert {o.receiver_id for o in observations} == set(registry) - left_out
    assert result.localizable and set(result.receivers_used) == set(registry) - left_out
    assert "2 receivers left out for uncalibrated dBFS powers" in result.reason
    assert all(rid in result.reason for rid in left_out)
    assert rss_row(result, "s", datetime(2025, 1, 1, tzinfo=timezone.utc)).reason == result.reason

    everything = set(registry) - {DEFAULT_RECEIVERS[2].id, DEFAULT_RECEIVERS[3].id}
    result, observations = localize_session(_rows_for(48.5, 7.5, everything), registry, 0.0)
    assert not result.localizable and len(observations) == 2
    assert result.reason.startswith("only 2 receivers detected the signal")
    assert f"{len(everything)} receivers left out for uncalibrated dBFS powers" in result.reason


def test_all_dbm_rows_localize_without_a_left_out_reason():
    from heimdall_pipeline.assets.localization import localize_session

    registry = {r.id: r for r in DEFAULT_RECEIVERS}
    result, observations = localize_session(_rows_for(48.5, 7.5, set()), registry, 0.0)
    assert result.localizable and result.reason is None and len(observations) == len(registry)
    assert result.distance_km(48.5, 7.5) < 1.0
    row = rss_row(result, "s", datetime(2025, 1, 1, tzinfo=timezone.utc), {"transmitter_truth": None})
    assert row.method == "rss" and row.latitude == result.latitude and row.residuals == result.residuals_db
    assert row.metadata_json == {"receivers_as_bounds": [], "transmitter_truth": None}
