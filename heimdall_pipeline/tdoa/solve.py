"""The transmitter's position from pair lags, on the sphere, with its 95 % region.

Model: a pair (a, b)'s lag is ``(d(p, a) - d(p, b)) / c`` with d the great-circle distance
(propagation_delay_s of haversine_km). A coarse grid over the receivers' surroundings finds the
basin of the weighted least-squares cost; Gauss-Newton (scipy's least_squares) refines it.

Uncertainty: generalised least squares with the lags' full covariance
``C = N/2 diag(measurement variances) + A diag(receiver timing variances) A^T`` (A: +1 for a
pair's first receiver, -1 for its second). The measured lags' window scatter is taken per pair,
but N receivers give only N - 1 independent lags and pairs sharing a receiver share its noise:
treating them as independent overstates that information by N / 2 (exactly so for equal errors).
A receiver's timing offset (tdoa/allowance.py) enters every pair it is in, which A carries. The
position's covariance is ``(J^T C^-1 J)^-1``, scaled by the reduced chi-square of the fit when it
exceeds 1 (lags that disagree beyond the model: the region widens). The 95 % region is the
ellipse ``x^T P^-1 x <= chi2_2(0.95)``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping

import numpy as np
import scipy.optimize

from heimdall_pipeline.geometry import chi2_2dof_quantile, latlon_to_tangent, tangent_to_latlon
from heimdall_pipeline.propagation import EARTH_RADIUS_KM, haversine_km, propagation_delay_s

CHI2_2DOF_95 = chi2_2dof_quantile(0.95)
KM_PER_DEG = math.pi * EARTH_RADIUS_KM / 180.0
GRID_MARGIN_DEG = 8.0
GRID_STEP_DEG = 0.1
COARSE_STEP_DEG = 0.4


@dataclasses.dataclass(frozen=True)
class PairGeometry:
    """What the solver needs of one pair: the two receivers' positions, the measured lag and its
    measurement error (1 sigma, without the receivers' timing allowances), the receivers' ids."""

    a: tuple[float, float]  # lat, lon
    b: tuple[float, float]
    lag_s: float
    sigma_s: float
    ids: tuple[str, str] = ("a", "b")


@dataclasses.dataclass(frozen=True)
class Region95:
    """The 95 % confidence ellipse: semi-axes in km, the major axis' bearing (degrees from north),
    and the covariance in (east, north) km^2."""

    semi_major_km: float
    semi_minor_km: float
    major_bearing_deg: float
    covariance_en_km2: tuple[tuple[float, float], tuple[float, float]]

    def contains(self, centre: tuple[float, float], point: tuple[float, float]) -> bool:
        """Whether point (lat, lon) lies inside the ellipse around centre."""
        x = np.array([float(v) for v in latlon_to_tangent(point[0], point[1], *centre)])
        cov = np.array(self.covariance_en_km2)
        return bool(x @ np.linalg.solve(cov, x) <= CHI2_2DOF_95)

    def polygon(self, centre: tuple[float, float], points: int = 72) -> list[tuple[float, float]]:
        """The ellipse as (lat, lon) vertices, for a map."""
        vals, vecs = np.linalg.eigh(np.array(self.covariance_en_km2))
        angles = np.linspace(0.0, 2 * np.pi, points, endpoint=False)
        unit = np.stack([np.cos(angles), np.sin(angles)])
        en = vecs @ (np.sqrt(np.clip(vals, 0, None) * CHI2_2DOF_95)[:, None] * unit)
        lat, lon = tangent_to_latlon(en[0], en[1], *centre)
        return [(float(a), float(b)) for a, b in zip(lat, lon)]

    def to_json(self) -> dict:
        return {"confidence": 0.95, "semi_major_km": self.semi_major_km, "semi_minor_km": self.semi_minor_km,
                "major_bearing_deg": self.major_bearing_deg,
                "covariance_en_km2": [list(r) for r in self.covariance_en_km2]}


@dataclasses.dataclass(frozen=True)
class Solution:
    latitude: float
    longitude: float
    region: Region95
    residuals_s: tuple[float, ...]  # measured - modelled lag, per pair
    chi2: float
    degrees_of_freedom: int
    widened_by: float = 1.0  # the region's axes were multiplied by this (sqrt of the reduced chi-square, >= 1)


def modelled_lags_s(pairs: list[PairGeometry], lat, lon) -> np.ndarray:
    """The lags a transmitter at (lat, lon) would give; broadcasts over arrays of positions
    (pairs along the last axis)."""
    lat = np.asarray(lat, dtype=float)[..., None]
    lon = np.asarray(lon, dtype=float)[..., None]
    alat = np.array([p.a[0] for p in pairs]); alon = np.array([p.a[1] for p in pairs])
    blat = np.array([p.b[0] for p in pairs]); blon = np.array([p.b[1] for p in pairs])
    return propagation_delay_s(haversine_km(lat, lon, alat, alon) - haversine_km(lat, lon, blat, blon))


def lag_covariance(pairs: list[PairGeometry], receiver_sigmas_s: Mapping[str, float] | None = None,
                   receivers: int | None = None) -> np.ndarray:
    """The pairs' lag covariance (s^2): measurement variances scaled by N / 2 on the diagonal, and
    each receiver's timing variance wherever it is in both pairs (+ same side, - opposite)."""
    ids = sorted({i for p in pairs for i in p.ids})
    n = receivers or len(ids)
    cov = np.diag([p.sigma_s**2 * n / 2.0 for p in pairs])
    if receiver_sigmas_s:
        incidence = incidence_matrix(pairs, ids)
        cov += incidence @ np.diag([receiver_sigmas_s.get(i, 0.0) ** 2 for i in ids]) @ incidence.T
    return cov


def incidence_matrix(pairs: list[PairGeometry], ids: list[str]) -> np.ndarray:
    """(pairs x receivers): +1 for a pair's first receiver, -1 for its second."""
    out = np.zeros((len(pairs), len(ids)))
    for k, p in enumerate(pairs):
        out[k, ids.index(p.ids[0])] = 1.0
        out[k, ids.index(p.ids[1])] = -1.0
    return out


def _grid_cost(pairs, whiten, lag, lat_axis, lon_axis) -> tuple[tuple[float, float], float]:
    best, best_cost = (float(lat_axis[0]), float(lon_axis[0])), np.inf
    for chunk in np.array_split(lat_axis, max(1, lat_axis.size // 64)):
        glat, glon = np.meshgrid(chunk, lon_axis, indexing="ij")
        cost = (((lag - modelled_lags_s(pairs, glat, glon)) @ whiten.T) ** 2).sum(axis=-1)
        k = np.unravel_index(int(np.argmin(cost)), cost.shape)
        if cost[k] < best_cost:
            best, best_cost = (float(glat[k]), float(glon[k])), float(cost[k])
    return best, best_cost


def _grid_start(pairs: list[PairGeometry], whiten: np.ndarray, lag: np.ndarray) -> tuple[float, float]:
    """The cost's basin: a coarse grid over the receivers' surroundings, then a fine one around
    its best point."""
    lats = [p.a[0] for p in pairs] + [p.b[0] for p in pairs]
    lons = [p.a[1] for p in pairs] + [p.b[1] for p in pairs]
    lon_stretch = 1.0 / max(math.cos(math.radians(float(np.clip(np.mean(lats), -80, 80)))), 0.2)
    lat_axis = np.arange(max(min(lats) - GRID_MARGIN_DEG, -89.0), min(max(lats) + GRID_MARGIN_DEG, 89.0),
                         COARSE_STEP_DEG)
    lon_axis = np.arange(min(lons) - GRID_MARGIN_DEG * lon_stretch, max(lons) + GRID_MARGIN_DEG * lon_stretch,
                         COARSE_STEP_DEG)
    (lat, lon), _ = _grid_cost(pairs, whiten, lag, lat_axis, lon_axis)
    fine_lat = np.arange(max(lat - 2 * COARSE_STEP_DEG, -89.0), min(lat + 2 * COARSE_STEP_DEG, 89.0), GRID_STEP_DEG)
    fine_lon = np.arange(lon - 2 * COARSE_STEP_DEG, lon + 2 * COARSE_STEP_DEG, GRID_STEP_DEG)
    return _grid_cost(pairs, whiten, lag, fine_lat, fine_lon)[0]


def solve(pairs: list[PairGeometry], receivers: int, receiver_sigmas_s: Mapping[str, float] | None = None) -> Solution:
    """Generalised least-squares position from at least two pairs over at least three receivers;
    receiver_sigmas_s: each receiver's timing allowance (1 sigma, s) by id."""
    lag = np.array([p.lag_s for p in pairs])
    covariance = lag_covariance(pairs, receiver_sigmas_s, receivers)
    whiten = np.linalg.inv(np.linalg.cholesky(covariance))  # W with W C W^T = I
    start = _grid_start(pairs, whiten, lag)

    def residuals(x):
        return whiten @ (lag - modelled_lags_s(pairs, x[0], x[1]))

    fit = scipy.optimize.least_squares(residuals, np.array(start), x_scale=np.array([0.01, 0.01]), method="lm")
    lat, lon = float(fit.x[0]), (float(fit.x[1]) + 180.0) % 360.0 - 180.0
    # Jacobian in km east / north (numerically, 10 m steps)
    step = 0.01
    jac = np.empty((len(pairs), 2))
    base = modelled_lags_s(pairs, lat, lon)
    jac[:, 0] = (modelled_lags_s(pairs, lat, lon + step / (KM_PER_DEG * math.cos(math.radians(lat)))) - base) / step
    jac[:, 1] = (modelled_lags_s(pairs, lat + step / KM_PER_DEG, lon) - base) / step
    jac = whiten @ jac
    res = lag - base
    white = whiten @ res
    chi2 = float(white @ white)
    dof = len(pairs) - 2
    scale = max(1.0, chi2 / dof if dof > 0 else 1.0)
    cov = np.linalg.pinv(jac.T @ jac) * scale
    vals, vecs = np.linalg.eigh(cov)
    major = vecs[:, 1]
    region = Region95(
        semi_major_km=float(math.sqrt(max(vals[1], 0) * CHI2_2DOF_95)),
        semi_minor_km=float(math.sqrt(max(vals[0], 0) * CHI2_2DOF_95)),
        major_bearing_deg=float(math.degrees(math.atan2(major[0], major[1])) % 180.0),
        covariance_en_km2=((float(cov[0, 0]), float(cov[0, 1])), (float(cov[1, 0]), float(cov[1, 1]))),
    )
    return Solution(latitude=lat, longitude=lon, region=region, residuals_s=tuple(float(r) for r in res), chi2=chi2,
                    degrees_of_freedom=dof, widened_by=float(math.sqrt(scale)))
