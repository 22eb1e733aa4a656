"""Radio propagation and geometry shared by the simulator, the session defaults and the
localization estimator, so all three use one model. Pure numpy."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

EARTH_RADIUS_KM = 6371.0088  # IUGG mean Earth radius
BOLTZMANN_DBM_HZ = -174.0  # 10*log10(k * 290 K / 1 mW), rounded as is customary
# Distances below 1 m (the size of an antenna) are taken as 1 m: the log-distance model has its
# pole at 0. One floor for the simulator's path loss and the estimator's distances (rss/),
# so the estimator fits exactly the model the simulated powers come from.
MIN_DISTANCE_KM = 1e-3
SPEED_OF_LIGHT_KM_S = 299_792.458


@dataclasses.dataclass(frozen=True)
class PropagationModel:
    """Log-distance path loss anchored on free space at the reference distance, plus shadowing.

    path_loss_exponent: n in ``10*n*log10(d/d0)`` beyond d0 (2 = free space; 2.8 is a plausible
    average for mixed terrain).
    reference_distance_km: d0; free-space loss applies at and below it.
    shadowing_sigma_db: standard deviation of the zero-mean log-normal shadowing, drawn once per
    (session, receiver); 0 disables it.
    """

    path_loss_exponent: float = 2.8
    reference_distance_km: float = 1.0
    shadowing_sigma_db: float = 0.0

    def __post_init__(self) -> None:
        if not self.path_loss_exponent > 0:
            raise ValueError(f"path_loss_exponent {self.path_loss_exponent} must be positive")
        if not self.reference_distance_km > 0:
            raise ValueError(f"reference_distance_km {self.reference_distance_km} must be positive")
        if not self.shadowing_sigma_db >= 0:
            raise ValueError(f"shadowing_sigma_db {self.shadowing_sigma_db} must be >= 0")


def haversine_km(lat1, lon1, lat2, lon2):
    """Great-circle distance in km on a sphere of radius EARTH_RADIUS_KM. Degrees in; broadcasts."""
    p1 = np.radians(lat1)
    p2 = np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dp / 2.0) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2.0) ** 2
    d = 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    return float(d) if np.ndim(d) == 0 else d


def slant_distance_km(lat1, lon1, alt1_m, lat2, lon2, alt2_m):
    """Straight-line distance combining the great-circle distance and the altitude difference."""
    ground = np.asarray(haversine_km(lat1, lon1, lat2, lon2), dtype=float)
    dh_km = (np.asarray(alt2_m, dtype=float) - np.asarray(alt1_m, dtype=float)) / 1000.0
    d = np.sqrt(ground**2 + dh_km**2)
    return float(d) if np.ndim(d) == 0 else d


def propagation_delay_s(distance_km):
    """Travel time in seconds over distance_km at the speed of light; broadcasts."""
    d = np.asarray(distance_km, dtype=float) / SPEED_OF_LIGHT_KM_S
    return float(d) if np.ndim(d) == 0 else d


def free_space_path_loss_db(distance_km, frequency_hz):
    """FSPL = 20 log10(d_m) + 20 log10(f_Hz) - 147.55 dB (d clipped at 1 m)."""
    d_m = np.maximum(np.asarray(distance_km, dtype=float), MIN_DISTANCE_KM) * 1000.0
    pl = 20.0 * np.log10(d_m) + 20.0 * np.log10(np.asarray(frequency_hz, dtype=float)) - 147.55
    return float(pl) if np.ndim(pl) == 0 else pl


def path_loss_db(distance_km, frequency_hz, model: PropagationModel | None = None):
    """Median path loss (dB, no shadowing) of the log-distance model; broadcasts over arrays.

    ``FSPL(d0) + 10 n log10(d/d0)`` for d >= d0, free space below d0; continuous at d0 and
    strictly increasing in distance (for d >= 1 m).
    """
    model = model or PropagationModel()
    d = np.maximum(np.asarray(distance_km, dtype=float), MIN_DISTANCE_KM)
    d0 = model.reference_distance_km
    far = free_space_path_loss_db(d0, frequency_hz) + 10.0 * model.path_loss_exponent * np.log10(d / d0)
    near = free_space_path_loss_db(d, frequency_hz)
    pl = np.where(d >= d0, far, near)
    return float(pl) if np.ndim(pl) == 0 else pl


def thermal_noise_power_dbm(sample_rate_hz: float, noise_figure_db: float) -> float:
    """kTB (T0 = 290 K) over the complex baseband bandwidth (= sample rate) plus noise figure."""
    return BOLTZMANN_DBM_HZ + 10.0 * math.log10(sample_rate_hz) + noise_figure_db
