"""Accuracy of the received-power estimator on synthetic observations (error, ellipse coverage,
solve time). Used by the tests and scripts/localization_accuracy.py, never by the pipeline."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Sequence

import numpy as np

from heimdall_pipeline.geometry import latlon_to_tangent, tangent_to_latlon
from heimdall_pipeline.rss.estimator import (
    DEFAULT_DETECTION_THRESHOLD_DB,
    REFERENCE_DISTANCE_KM,
    PowerObservation,
    localize,
    log_distance_db,
)
from heimdall_pipeline.propagation import MIN_DISTANCE_KM, free_space_path_loss_db, haversine_km
from heimdall_pipeline.receivers import DEFAULT_RECEIVERS


@dataclasses.dataclass(frozen=True)
class Trial:
    latitude: float
    longitude: float
    eirp_dbm: float
    path_loss_exponent: float
    observations: tuple[PowerObservation, ...]


@dataclasses.dataclass(frozen=True)
class AccuracyReport:
    trials: int
    localized: int
    shadowing_sigma_db: float
    median_error_km: float
    p90_error_km: float
    coverage: float  # fraction of localized trials whose ellipse contains the truth
    mean_solve_time_s: float  # wall clock
    median_semi_major_km: float
    mean_solve_cpu_s: float = float("nan")  # CPU time of the solving thread (insensitive to machine load)
    errors_km: tuple[float, ...] = ()


def hull_sampler(receivers: Sequence[Any]):
    from scipy.spatial import Delaunay

    lat0 = float(np.mean([r.latitude for r in receivers]))
    lon0 = float(np.mean([r.longitude for r in receivers]))
    x, y = latlon_to_tangent([r.latitude for r in receivers], [r.longitude for r in receivers], lat0, lon0)
    tri = Delaunay(np.column_stack([x, y]))

    def sample(rng: np.random.Generator) -> tuple[float, float]:
        while True:  # rejection sampling, uniform in area on the tangent plane
            px, py = rng.uniform(x.min(), x.max()), rng.uniform(y.min(), y.max())
            if tri.find_simplex(np.array([[px, py]]))[0] >= 0:
                la, lo = tangent_to_latlon(px, py, lat0, lon0)
                return float(la), float(lo)

    return sample


def synthetic_trial(rng: np.random.Generator, receivers: Sequence[Any], *, shadowing_sigma_db: float,
                    frequency_hz: float = 145e6, min_snr_db: float = 10.0, min_receivers: int = 5,
                    detection_threshold_db: float = DEFAULT_DETECTION_THRESHOLD_DB,
                    samples_per_capture: int = 12_000, path_loss_exponent: float | None = None,
                    sampler=None) -> Trial:
    """One random transmitter inside the receivers' convex hull with direct power observations.

    Received power: log-distance model (slant distance to a transmitter at ground level) +
    log-normal shadowing + the measurement noise of a power estimate from `samples_per_capture`
    complex samples at the resulting SNR. Noise powers are kTB at 12 kHz + a 6..12 dB noise figure. The EIRP is chosen so
    that the min_receivers-th strongest receiver has SNR uniform in [min_snr_db, min_snr_db + 15].
    """
    sample = sampler or hull_sampler(receivers)
    lat, lon = sample(rng)
    n = float(rng.uniform(2.0, 4.0)) if path_loss_exponent is None else float(path_loss_exponent)
    rlat = np.array([r.latitude for r in receivers])
    rlon = np.array([r.longitude for r in receivers])
    d = haversine_km(lat, lon, rlat, rlon)
    dz2 = (np.array([float(getattr(r, "altitude_m", 0.0) or 0.0) for r in receivers]) / 1000.0) ** 2
    gain = -free_space_path_loss_db(REFERENCE_DISTANCE_KM, frequency_hz) - n * log_distance_db(d, dz2 + MIN_DISTANCE_KM**2)
    gain = gain + rng.normal(0.0, shadowing_sigma_db, len(receivers)) if shadowing_sigma_db > 0 else gain
    noise = rng.uniform(-128.0, -122.0, len(receivers))
    snr0 = gain - noise
    kth = np.sort(snr0)[::-1][min_receivers - 1]
    eirp = float(min_snr_db + rng.uniform(0.0, 15.0) - kth)
    snr_lin = 10 ** ((eirp + snr0) / 10.0)
    # signal power = (total - noise) over the signal's bins: the signal x noise cross term dominates,
    # var(P_s)/P_s^2 ~ (2/snr + 1/snr^2)/N (dsp/metrics.py achieves this on simulated carriers)
    meas_std_db = 10.0 / math.log(10.0) * np.sqrt((2.0 / snr_lin + 1.0 / snr_lin**2) / samples_per_capture)
    measured = eirp + gain + rng.normal(0.0, 1.0, len(receivers)) * meas_std_db
    obs = []
    for i, r in enumerate(receivers):
        if measured[i] - noise[i] >= detection_threshold_db:
            obs.append(PowerObservation.detection(r.id, r.latitude, r.longitude, frequency_hz,
                                                  float(measured[i]), float(noise[i]), r.altitude_m))
        else:
            obs.append(PowerObservation.non_detection(r.id, r.latitude, r.longitude, frequency_hz, float(noise[i]),
                                                      r.altitude_m))
    return Trial(lat, lon, eirp, n, tuple(obs))


def evaluate_accuracy(trials: int = 200, seed: int = 0, shadowing_sigma_db: float = 0.0,
                      receivers: Sequence[Any] | None = None, **localize_kwargs: Any) -> AccuracyReport:
    """Runs `trials` synthetic trials and summarises the localization error and ellipse coverage.

    The estimator is given the true shadowing sigma unless shadowing_sigma_db is in localize_kwargs.
    """
    if receivers is None:
        receivers = DEFAULT_RECEIVERS
    rng = np.random.default_rng(seed)
    sampler = hull_sampler(receivers)
    kwargs = {"shadowing_sigma_db": shadowing_sigma_db, **localize_kwargs}
    errors, covered, times, majors, cpu = [], [], [], [], []
    for _ in range(trials):
        trial = synthetic_trial(rng, receivers, shadowing_sigma_db=shadowing_sigma_db, sampler=sampler)
        c0 = time.thread_time()
        res = localize(trial.observations, **kwargs)
        cpu.append(time.thread_time() - c0)
        times.append(res.solve_time_s)
        if not res.localizable:
            continue
        errors.append(res.distance_km(trial.latitude, trial.longitude))
        covered.append(res.contains(trial.latitude, trial.longitude))
        majors.append(res.ellipse_semi_major_km)
    err = np.array(errors) if errors else np.array([np.nan])
    return AccuracyReport(
        trials=trials, localized=len(errors), shadowing_sigma_db=shadowing_sigma_db,
        median_error_km=float(np.median(err)), p90_error_km=float(np.percentile(err, 90)),
        coverage=float(np.mean(covered)) if covered else float("nan"),
        mean_solve_time_s=float(np.mean(times)), median_semi_major_km=float(np.median(majors)) if majors else float("nan"),
        mean_solve_cpu_s=float(np.mean(cpu)),
        errors_km=tuple(float(e) for e in errors),
    )
