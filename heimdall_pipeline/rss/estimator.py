"""Transmitter localization from per-receiver received-power observations (RSS localization).

Pure domain code: no Dagster, no storage, no database.

Model
-----
Log-distance path loss with a free-space reference at d0 = 1 km::

    P_rx,i = EIRP - FSPL(d0, f) - 10 * n * log10(d_i / d0) + X_i,    X_i ~ N(0, sigma^2)

The unknowns are the transmitter position (x, y), its EIRP and the path-loss exponent n (bounded,
default 1.6..4.5). Distances d_i are great-circle (haversine) distances, so no projection error
enters the model; the position is *parametrised* in km on an equirectangular tangent plane about a
centre point (receivers' centroid while searching, the estimate itself for the uncertainty).

With fewer than 5 detections (no residual degree of freedom for 4 unknowns) a weak Gaussian prior
n ~ N(2.75, 0.75) is added as a residual so that 3-4 receivers still give a defined solution.

Receivers that did not detect the signal are not ignored: their noise power plus the detection
threshold is an upper bound on the received power, giving a one-sided residual
``max(0, P_pred - bound)`` (zero when the prediction is below the bound).

Estimation
----------
1. Global search: on a grid over the receivers' bounding box (plus a margin) the cost is profiled
   over (EIRP, n) in closed form (for a fixed position the model is linear in EIRP and n: weighted
   linear regression, n clipped to its bounds, IRLS for the robust loss and the active bounds).
2. The best distinct local minima of that grid start ``scipy.optimize.least_squares`` (trf, bounded
   n, ``loss="soft_l1"``, residuals normalised by the residual scale sigma so ``f_scale=1`` means
   f_scale = sigma). The lowest final cost wins.

Uncertainty (95 % confidence ellipse)
-------------------------------------
sigma = sqrt(shadowing_sigma_db^2 + measurement_sigma_db^2) is the prior residual scale. The scale
actually used is s = sigma * sqrt(max(1, robust_cost / dof)): the residual variance, floored by the
prior (with 7 receivers and 4 unknowns the residual variance has 3 dof and alone would often make
the ellipse overconfident).

* Linearised: the Jacobian covariance (J^T J)^-1 * s^2 at the estimate (reported as
  covariance_km2 and linearized_semi_*_km; chi-square 2-dof quantile, 5.991 for 95 %).
* Reported ellipse (default ``ellipse="likelihood"``): with 7 receivers over ~1,500 km and 6 dB of
  shadowing the problem is strongly nonlinear (errors of tens to hundreds of km, banana-shaped and
  one-sided regions, a far-field valley where a distant transmitter with a large EIRP fits almost as
  well), and the linearised ellipse covers the truth in only ~85-92 % of trials. Instead, the profile
  likelihood (Gaussian, EIRP and n minimised out) is evaluated on a grid about the estimate, and the
  region {p : chi2(p) - chi2_min <= 5.991 * s^2/sigma^2} (its connected part containing the
  estimate, confined to the search area = receivers' bounding box + search_margin_km) is summarised
  by the ellipse with the same second moments about the estimate (exact for an elliptical region).
  Measured coverage: >= 97 % at 6 dB, ~100 % without shadowing (see scripts/localization_accuracy.py).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Sequence

import numpy as np

from heimdall_pipeline.geometry import chi2_2dof_quantile, latlon_to_tangent, tangent_to_latlon
from heimdall_pipeline.propagation import EARTH_RADIUS_KM, MIN_DISTANCE_KM, free_space_path_loss_db, haversine_km

METHOD = "rss"  # the localizations.method of this estimator's results

REFERENCE_DISTANCE_KM = 1.0
DEFAULT_PATH_LOSS_EXPONENT_BOUNDS = (1.6, 4.5)
DEFAULT_SHADOWING_SIGMA_DB = 6.0
DEFAULT_MEASUREMENT_SIGMA_DB = 0.5
# dsp/metrics.py reports "signal" for a full-band SNR >= ~3 dB (threshold 1.5 dB on the estimate),
# so a non-detection means received power <= noise power + ~3 dB.
DEFAULT_DETECTION_THRESHOLD_DB = 3.0
DEFAULT_CONFIDENCE = 0.95
MIN_DETECTED_RECEIVERS = 3
# With fewer than 5 detections (dof <= 0 for 4 unknowns) a weak prior on n keeps the problem posed.
PRIOR_PATH_LOSS_EXPONENT = 2.75
PRIOR_PATH_LOSS_EXPONENT_SIGMA = 0.75
# Distances are softened by propagation.MIN_DISTANCE_KM, the floor the simulator's path loss uses
# too, so the estimator fits the same model the observations are generated from.
_MAX_REGION_HALF_WIDTH_KM = 4000.0




# --------------------------------------------------------------------------------------------
# Inputs and outputs
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PowerObservation:
    """What one receiver saw of one session's signal.

    detected=True: signal_power_dbm is the measured received signal power (dBm).
    detected=False: the signal was below detection; noise_power_dbm (dBm) is required and
    noise_power_dbm + detection_threshold_db is an upper bound on the received power.
    """

    receiver_id: str
    latitude: float
    longitude: float
    frequency_hz: float
    detected: bool
    signal_power_dbm: float | None = None
    noise_power_dbm: float | None = None
    altitude_m: float = 0.0

    def __post_init__(self) -> None:
        if not -90.0 <= float(self.latitude) <= 90.0 or not -180.0 <= float(self.longitude) <= 180.0:
            raise ValueError(f"receiver {self.receiver_id}: invalid position {self.latitude}, {self.longitude}")
        if not (math.isfinite(float(self.frequency_hz)) and float(self.frequency_hz) > 0):
            raise ValueError(f"receiver {self.receiver_id}: frequency_hz must be positive")
        if self.detected:
            if self.signal_power_dbm is None or not math.isfinite(float(self.signal_power_dbm)):
                raise ValueError(f"receiver {self.receiver_id}: a detection needs a finite signal_power_dbm")
        elif self.noise_power_dbm is None or not math.isfinite(float(self.noise_power_dbm)):
            raise ValueError(f"receiver {self.receiver_id}: a non-detection needs a finite noise_power_dbm")

    @classmethod
    def detection(cls, receiver_id: str, latitude: float, longitude: float, frequency_hz: float,
                  signal_power_dbm: float, noise_power_dbm: float | None = None,
                  altitude_m: float = 0.0) -> "PowerObservation":
        return cls(receiver_id, latitude, longitude, frequency_hz, True, signal_power_dbm,
                   noise_power_dbm, altitude_m)

    @classmethod
    def non_detection(cls, receiver_id: str, latitude: float, longitude: float, frequency_hz: float,
                      noise_power_dbm: float, altitude_m: float = 0.0) -> "PowerObservation":
        return cls(receiver_id, latitude, longitude, frequency_hz, False, None, noise_power_dbm, altitude_m)

    @classmethod
    def from_metrics(cls, receiver: Any, metrics: Any, frequency_hz: float) -> "PowerObservation":
        """From a receivers.Receiver and the dsp.metrics.SignalMetrics of a capture in dBm (duck-typed:
        signal_detected, signal_power_db, noise_power_db)."""
        detected = bool(metrics.signal_detected)
        signal = float(metrics.signal_power_db) if detected else None
        noise = metrics.noise_power_db
        noise = float(noise) if noise is not None and math.isfinite(float(noise)) else None
        return cls(receiver.id, float(receiver.latitude), float(receiver.longitude), float(frequency_hz),
                   detected, signal, noise, float(getattr(receiver, "altitude_m", 0.0) or 0.0))


@dataclasses.dataclass(frozen=True)
class LocalizationResult:
    """Outcome of localize(). When localizable is False only reason and the receiver lists are set.

    Ellipse: confidence region (default 95 %) on the local tangent plane centred at the estimate;
    semi-axes in km, orientation = azimuth of the major axis in degrees clockwise from north, 0..180.
    residuals_db: measured - predicted (detections) or max(0, predicted - bound) (non-detections).
    """

    localizable: bool
    reason: str | None = None
    method: str = METHOD
    latitude: float | None = None
    longitude: float | None = None
    eirp_dbm: float | None = None
    path_loss_exponent: float | None = None
    ellipse_semi_major_km: float | None = None
    ellipse_semi_minor_km: float | None = None
    ellipse_orientation_deg: float | None = None
    confidence: float = DEFAULT_CONFIDENCE
    residuals_db: dict[str, float] = dataclasses.field(default_factory=dict)
    receivers_used: tuple[str, ...] = ()
    receivers_as_bounds: tuple[str, ...] = ()
    residual_scale_db: float | None = None
    linearized_semi_major_km: float | None = None
    linearized_semi_minor_km: float | None = None
    covariance_km2: tuple[tuple[float, float], tuple[float, float]] | None = None
    cost: float | None = None
    warnings: tuple[str, ...] = ()
    solve_time_s: float = 0.0

    def _ellipse_matrix_inv(self) -> np.ndarray:
        a, b = float(self.ellipse_semi_major_km), float(self.ellipse_semi_minor_km)
        theta = math.radians(float(self.ellipse_orientation_deg))
        u = np.array([math.sin(theta), math.cos(theta)])  # major axis, (east, north)
        v = np.array([math.cos(theta), -math.sin(theta)])
        return np.outer(u, u) / a**2 + np.outer(v, v) / b**2

    def contains(self, latitude: float, longitude: float) -> bool:
        """True if the point lies inside (or on) the confidence ellipse."""
        if not self.localizable:
            return False
        x, y = latlon_to_tangent(latitude, longitude, self.latitude, self.longitude)
        p = np.array([float(x), float(y)])
        return bool(p @ self._ellipse_matrix_inv() @ p <= 1.0 + 1e-9)

    def distance_km(self, latitude: float, longitude: float) -> float:
        """Great-circle distance from the estimate to a point (e.g. the truth)."""
        if not self.localizable:
            raise ValueError("no estimate: " + str(self.reason))
        return float(haversine_km(self.latitude, self.longitude, latitude, longitude))

    def ellipse_polygon(self, points: int = 121) -> tuple[np.ndarray, np.ndarray]:
        """(lat, lon) arrays tracing the ellipse boundary."""
        t = np.linspace(0.0, 2.0 * math.pi, points)
        theta = math.radians(float(self.ellipse_orientation_deg))
        a, b = float(self.ellipse_semi_major_km), float(self.ellipse_semi_minor_km)
        east = a * np.cos(t) * math.sin(theta) + b * np.sin(t) * math.cos(theta)
        north = a * np.cos(t) * math.cos(theta) - b * np.sin(t) * math.sin(theta)
        return tangent_to_latlon(east, north, self.latitude, self.longitude)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary."""
        return dataclasses.asdict(self)



# --------------------------------------------------------------------------------------------
# The problem (arrays) and its cost
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Problem:
    lat: np.ndarray  # all receivers
    lon: np.ndarray
    detected: np.ndarray  # bool mask
    target: np.ndarray  # detections: P + FSPL(d0); bounds: bound + FSPL(d0)  ("y" = EIRP - n*L)
    fspl0: np.ndarray
    dz2: np.ndarray  # (altitude difference km)^2 + MIN_DISTANCE_KM^2 per receiver
    sigma: float
    n_bounds: tuple[float, float]
    use_prior: bool


def log_distance_db(d_km: np.ndarray, dz2: np.ndarray | float = MIN_DISTANCE_KM**2) -> np.ndarray:
    """10*log10(d_slant / d0) with d_slant^2 = ground^2 + (altitude difference^2 + MIN_DISTANCE^2)."""
    return 5.0 * np.log10((d_km * d_km + dz2) / REFERENCE_DISTANCE_KM**2)


def _soft_l1(z: np.ndarray) -> np.ndarray:
    return 2.0 * (np.sqrt(1.0 + z) - 1.0)


def _profile(problem: _Problem, lat: np.ndarray, lon: np.ndarray, iterations: int = 6, robust: bool = True):
    """Cost minimised over (EIRP, n) at each of K positions. Returns (cost, eirp, n), each (K,).

    robust=True: soft_l1 cost (IRLS); False: Gaussian cost sum(r^2/sigma^2) (the likelihood).
    Upper bounds enter by an active-set iteration (a violated bound acts as an equality)."""
    L = log_distance_db(haversine_km(lat[:, None], lon[:, None], problem.lat[None, :], problem.lon[None, :]),
                      problem.dz2[None, :])
    y = np.broadcast_to(problem.target, L.shape)
    det = np.broadcast_to(problem.detected, L.shape)
    n_lo, n_hi = problem.n_bounds
    lam = (1.0 / PRIOR_PATH_LOSS_EXPONENT_SIGMA**2) if problem.use_prior else 0.0
    n0 = PRIOR_PATH_LOSS_EXPONENT
    w = det.astype(float)  # start: detections only, plain least squares
    s2 = problem.sigma**2
    if not robust:  # IRLS only serves the bounds' active set
        iterations = 3 if not problem.detected.all() else 1
    for _ in range(iterations):
        sw = w.sum(1)
        swl = (w * L).sum(1)
        swl2 = (w * L * L).sum(1)
        swy = (w * y).sum(1)
        swly = (w * L * y).sum(1)
        # minimise sum w (y - E + n L)^2 / s2 + lam (n - n0)^2  -> 2x2 normal equations
        a11, a12, a22 = sw, -swl, swl2 + lam * s2
        b1, b2 = swy, -swly + lam * s2 * n0
        detm = a11 * a22 - a12 * a12
        detm = np.where(np.abs(detm) < 1e-12, 1e-12, detm)
        n = (a11 * b2 - a12 * b1) / detm
        n = np.clip(n, n_lo, n_hi)
        E = (swy + n * swl) / np.maximum(sw, 1e-12)
        r = y - E[:, None] + n[:, None] * L  # measured - predicted (detections)
        r = np.where(det, r, np.maximum(0.0, -r))  # bounds: predicted - bound when violated
        z = (r * r) / s2
        rw = 1.0 / np.sqrt(1.0 + z) if robust else np.ones_like(z)  # soft_l1 IRLS weight
        w = np.where(det, rw, np.where(r > 0.0, rw, 0.0))
    cost = _soft_l1(z).sum(1) if robust else z.sum(1)
    if problem.use_prior:
        cost = cost + lam * (n - n0) ** 2
    return cost, E, n


def _residuals(problem: _Problem, lat: float, lon: float, eirp: float, n: float) -> np.ndarray:
    """Raw residuals in dB (detections: measured - predicted; bounds: max(0, predicted - bound))."""
    L = log_distance_db(haversine_km(lat, lon, problem.lat, problem.lon), problem.dz2)
    r = problem.target - eirp + n * L
    return np.where(problem.detected, r, np.maximum(0.0, -r))


def _normalised(problem: _Problem, lat: float, lon: float, eirp: float, n: float) -> np.ndarray:
    r = _residuals(problem, lat, lon, eirp, n) / problem.sigma
    if problem.use_prior:
        r = np.append(r, (n - PRIOR_PATH_LOSS_EXPONENT) / PRIOR_PATH_LOSS_EXPONENT_SIGMA)
    return r


def _normalised_and_jacobian(problem: _Problem, p: np.ndarray, c_lat: float, c_lon: float):
    """Normalised residuals and their analytic Jacobian w.r.t. (x km, y km, EIRP, n), the position
    on the equirectangular tangent plane about (c_lat, c_lon)."""
    x, y, eirp, n = (float(v) for v in p)
    lat, lon = (float(v) for v in tangent_to_latlon(x, y, c_lat, c_lon))
    phi1, phi2 = math.radians(lat), np.radians(problem.lat)
    dphi = phi2 - phi1
    dlmb = np.radians(problem.lon - lon)
    cos1, cos2 = math.cos(phi1), np.cos(phi2)
    a = np.clip(np.sin(dphi / 2) ** 2 + cos1 * cos2 * np.sin(dlmb / 2) ** 2, 1e-18, 1.0 - 1e-15)
    d = 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(a))
    L = log_distance_db(d, problem.dz2)
    r = (problem.target - eirp + n * L) / problem.sigma
    # d(d)/d(a), d(a)/d(phi1), d(a)/d(lambda1)
    dd_da = EARTH_RADIUS_KM / np.sqrt(a * (1.0 - a))
    da_dphi = -0.5 * np.sin(dphi) - math.sin(phi1) * cos2 * np.sin(dlmb / 2) ** 2
    da_dlmb = -0.5 * cos1 * cos2 * np.sin(dlmb)
    dL_dd = 10.0 * d / ((d * d + problem.dz2) * math.log(10.0))
    dphi_dy = 1.0 / EARTH_RADIUS_KM
    dlmb_dx = 1.0 / (EARTH_RADIUS_KM * math.cos(math.radians(c_lat)))
    g = n * dL_dd * dd_da / problem.sigma
    J = np.empty((len(r), 4))
    J[:, 0] = g * da_dlmb * dlmb_dx
    J[:, 1] = g * da_dphi * dphi_dy
    J[:, 2] = -1.0 / problem.sigma
    J[:, 3] = L / problem.sigma
    bound = ~problem.detected
    if bound.any():  # one-sided: max(0, -r); derivative -J where violated, 0 otherwise
        violated = bound & (r < 0)
        J[bound & ~violated] = 0.0
        J[violated] *= -1.0
        r = np.where(bound, np.maximum(0.0, -r), r)
    if problem.use_prior:
        r = np.append(r, (n - PRIOR_PATH_LOSS_EXPONENT) / PRIOR_PATH_LOSS_EXPONENT_SIGMA)
        J = np.vstack([J, [0.0, 0.0, 0.0, 1.0 / PRIOR_PATH_LOSS_EXPONENT_SIGMA]])
    return r, J


def _robust_cost(r_norm: np.ndarray) -> float:
    return float(_soft_l1(r_norm * r_norm).sum())


def _local_minima(cost: np.ndarray, count: int) -> list[int]:
    """Flat indices of the `count` lowest strict-ish local minima of a 2-D cost grid."""
    padded = np.pad(cost, 1, constant_values=np.inf)
    c = padded[1:-1, 1:-1]
    is_min = np.ones_like(c, dtype=bool)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di or dj:
                is_min &= c <= padded[1 + di:padded.shape[0] - 1 + di, 1 + dj:padded.shape[1] - 1 + dj]
    idx = np.flatnonzero(is_min.ravel())
    idx = idx[np.argsort(cost.ravel()[idx])]
    if len(idx) == 0:
        idx = np.array([int(np.argmin(cost))])
    return [int(i) for i in idx[:count]]


def _likelihood_region(problem: _Problem, est_lat: float, est_lon: float, lin_major: float, threshold: float,
                       gauss_min: float, domain: tuple[float, float, float, float] | None = None,
                       cells: int = 45, connected: bool = True):
    """Grid cells (east, north km about the estimate) where the Gaussian profile likelihood is within
    `threshold` of its minimum. The grid starts at ~2.5 linearised semi-major axes and grows while
    the region touches its edge. connected=True keeps the component containing the estimate.
    domain: (east min, east max, north min, north max) km; cells outside it are not in the region.
    Returns (points (k, 2), cell size km, unbounded, reaches_domain_edge)."""
    from scipy import ndimage

    half = float(np.clip(2.5 * lin_major, 5.0, _MAX_REGION_HALF_WIDTH_KM))
    pts, cell, unbounded = np.zeros((0, 2)), 2 * half / (cells - 1), False
    for _attempt in range(8):
        axis = np.linspace(-half, half, cells)
        cell = axis[1] - axis[0]
        ex, ny = np.meshgrid(axis, axis)
        rlat, rlon = tangent_to_latlon(ex.ravel(), ny.ravel(), est_lat, est_lon)
        rc, _, _ = _profile(problem, rlat, rlon, robust=False)
        inside = ((rc - min(gauss_min, float(rc.min()))) <= threshold).reshape(ex.shape)
        if domain is not None:
            inside &= (ex >= domain[0]) & (ex <= domain[1]) & (ny >= domain[2]) & (ny <= domain[3])
        c = cells // 2
        inside[c, c] = True
        if connected:
            labels, _ = ndimage.label(inside)
            inside = labels == labels[c, c]
        touches = bool(inside[0, :].any() or inside[-1, :].any() or inside[:, 0].any() or inside[:, -1].any())
        if inside.sum() < 25 and not touches and half > 5.0:
            half = max(5.0, half / 3.0)  # region much smaller than the grid: resolve it better
            continue
        pts = np.column_stack([ex[inside], ny[inside]])
        if not touches:
            break
        if half >= _MAX_REGION_HALF_WIDTH_KM:
            unbounded = True
            break
        half = min(_MAX_REGION_HALF_WIDTH_KM, half * 2.5)
    at_edge = False
    if domain is not None and len(pts):
        at_edge = bool(np.any((pts[:, 0] - cell < domain[0]) | (pts[:, 0] + cell > domain[1])
                              | (pts[:, 1] - cell < domain[2]) | (pts[:, 1] + cell > domain[3])))
    return pts, cell, unbounded, at_edge


def _region_ellipse(region: np.ndarray, cell: float, cov_xy: np.ndarray, chi2: float,
                    method: str = "moment") -> tuple[float, float, float]:
    """(semi-major km, semi-minor km, azimuth deg clockwise from north) of the reported ellipse.

    moment: the ellipse with the same second moments M about the estimate as the likelihood region
            (cells padded to their outer corners). A uniformly filled ellipse centred at the
            estimate is reproduced exactly (semi-axes 2*sqrt(eig M)); a banana-shaped or one-sided
            region gets an ellipse of matching extent.
    linear: the Jacobian ellipse p' C^-1 p <= chi2 (also the fallback for a region of < 12 cells).
    """
    if method == "linear" or len(region) < 12:
        shape = cov_xy * chi2
    else:
        pad = region + np.sign(region) * (cell / 2.0)  # cell centres -> outer corners
        shape = pad.T @ pad / len(pad) * 4.0
    evals, evecs = np.linalg.eigh(shape)
    evals = np.clip(evals, 0.0, None)
    v = evecs[:, 1]
    return math.sqrt(evals[1]), math.sqrt(evals[0]), math.degrees(math.atan2(v[0], v[1])) % 180.0


# --------------------------------------------------------------------------------------------
# localize
# --------------------------------------------------------------------------------------------


def localize(
    observations: Sequence[PowerObservation],
    *,
    shadowing_sigma_db: float = DEFAULT_SHADOWING_SIGMA_DB,
    measurement_sigma_db: float = DEFAULT_MEASUREMENT_SIGMA_DB,
    detection_threshold_db: float = DEFAULT_DETECTION_THRESHOLD_DB,
    path_loss_exponent_bounds: tuple[float, float] = DEFAULT_PATH_LOSS_EXPONENT_BOUNDS,
    confidence: float = DEFAULT_CONFIDENCE,
    transmitter_altitude_m: float = 0.0,
    search_margin_km: float = 300.0,
    grid_points: int = 41,
    starts: int = 4,
    ellipse: str = "likelihood",
) -> LocalizationResult:
    """Estimates the transmitter position, EIRP and path-loss exponent from received powers.

    shadowing_sigma_db: prior standard deviation of log-normal shadowing (dB). It is the robust
        loss scale (f_scale) and the floor of the residual scale used for the confidence ellipse.
        6 dB is a typical value for real propagation; pass 0 for an ideal (simulated) channel.
    measurement_sigma_db: power-measurement uncertainty (dB) added in quadrature; keeps the
        scale positive when shadowing_sigma_db is 0.
    detection_threshold_db: a non-detection bounds the received power by noise + this.
    path_loss_exponent_bounds: bounds on n.
    confidence: probability content of the ellipse (chi-square 2 dof).
    transmitter_altitude_m: assumed transmitter altitude; with the receivers' altitudes it turns
        ground distance into slant distance (matters only within a few km of a receiver).
    search_margin_km: the search area (and the area the confidence region is confined to) is
        the receivers' bounding box grown by this margin.
    grid_points, starts: global-search grid size per axis and number of local minima refined.
    ellipse: "likelihood" (default): moment-matched ellipse of the profile-likelihood region, honest
        under the strong nonlinearity of RSS localization; "linear": the Jacobian ellipse only
        (overconfident with few receivers and several dB of shadowing: ~85-92 % coverage of a
        nominal 95 % with 7 receivers and 6 dB).
    """
    if ellipse not in ("likelihood", "linear"):
        raise ValueError(f"ellipse {ellipse!r} must be 'likelihood' or 'linear'")
    t0 = time.perf_counter()
    observations = list(observations)
    detected = [o for o in observations if o.detected]
    bounds = [o for o in observations if not o.detected]
    used_ids = tuple(o.receiver_id for o in detected)
    bound_ids = tuple(o.receiver_id for o in bounds)
    reason = _not_localizable_reason(detected)
    if reason is not None:
        return LocalizationResult(False, reason=reason, confidence=confidence, receivers_used=used_ids,
                                  receivers_as_bounds=bound_ids, solve_time_s=time.perf_counter() - t0)
    sigma = _prior_residual_scale(shadowing_sigma_db, measurement_sigma_db)
    ordered = detected + bounds
    problem = _build_problem(ordered, sigma, _checked_bounds(path_loss_exponent_bounds),
                             detection_threshold_db, transmitter_altitude_m)
    chi2 = chi2_2dof_quantile(confidence)
    frame, candidates = _grid_search(problem, search_margin_km, grid_points, starts, chi2)
    est_lat, est_lon, eirp, n_hat = _refine(problem, frame, candidates, search_margin_km)
    fit = _linearised_uncertainty(problem, est_lat, est_lon, eirp, n_hat, chi2)
    warnings: list[str] = []
    if ellipse == "likelihood":
        major, minor, orientation, at_edge = _likelihood_ellipse(problem, est_lat, est_lon, fit, chi2, search_margin_km)
        if at_edge:
            warnings.append(f"the {confidence:.0%} likelihood region reaches the edge of the search area (receivers' "
                            f"bounding box + {search_margin_km:.0f} km): the position is poorly constrained")
    else:
        major, minor, orientation = _region_ellipse(np.zeros((0, 2)), 0.0, fit.cov_xy, chi2, "linear")
    n_lo, n_hi = problem.n_bounds
    if n_hat <= n_lo + 1e-3 or n_hat >= n_hi - 1e-3:
        warnings.append(f"path-loss exponent at its bound ({n_hat:.2f})")
    raw = _residuals(problem, est_lat, est_lon, eirp, n_hat)
    cov_xy = fit.cov_xy
    return LocalizationResult(
        True,
        latitude=est_lat,
        longitude=est_lon,
        eirp_dbm=eirp,
        path_loss_exponent=n_hat,
        ellipse_semi_major_km=major,
        ellipse_semi_minor_km=minor,
        ellipse_orientation_deg=orientation,
        confidence=confidence,
        residuals_db={o.receiver_id: float(r) for o, r in zip(ordered, raw)},
        receivers_used=used_ids,
        receivers_as_bounds=bound_ids,
        residual_scale_db=sigma * math.sqrt(fit.variance_factor),
        linearized_semi_major_km=fit.semi_major_km,
        linearized_semi_minor_km=fit.semi_minor_km,
        covariance_km2=((float(cov_xy[0, 0]), float(cov_xy[0, 1])), (float(cov_xy[1, 0]), float(cov_xy[1, 1]))),
        cost=fit.cost,
        warnings=tuple(warnings),
        solve_time_s=time.perf_counter() - t0,
    )


def _not_localizable_reason(detected: list[PowerObservation]) -> str | None:
    """Why the detections cannot fix a position (too few, or too few distinct places), or None."""
    used_ids = ", ".join(o.receiver_id for o in detected)
    if len(detected) < MIN_DETECTED_RECEIVERS:
        if detected:
            return (f"only {len(detected)} receiver{'s' if len(detected) != 1 else ''} detected the signal "
                    f"({used_ids}); {MIN_DETECTED_RECEIVERS} are needed")
        return f"no receiver detected the signal; {MIN_DETECTED_RECEIVERS} are needed"
    positions = {(round(o.latitude, 4), round(o.longitude, 4)) for o in detected}
    if len(positions) < MIN_DETECTED_RECEIVERS:
        return (f"the {len(detected)} detecting receivers ({used_ids}) are at only {len(positions)} distinct "
                f"positions; {MIN_DETECTED_RECEIVERS} are needed")
    return None


def _prior_residual_scale(shadowing_sigma_db: float, measurement_sigma_db: float) -> float:
    if shadowing_sigma_db < 0 or measurement_sigma_db < 0:
        raise ValueError("sigmas must be non-negative")
    sigma = math.hypot(shadowing_sigma_db, measurement_sigma_db)
    if sigma <= 0:
        raise ValueError("shadowing_sigma_db and measurement_sigma_db cannot both be 0")
    return sigma


def _checked_bounds(path_loss_exponent_bounds: tuple[float, float]) -> tuple[float, float]:
    n_lo, n_hi = map(float, path_loss_exponent_bounds)
    if not 0 < n_lo < n_hi:
        raise ValueError(f"invalid path_loss_exponent_bounds {path_loss_exponent_bounds}")
    return n_lo, n_hi


def _build_problem(ordered: list[PowerObservation], sigma: float, n_bounds: tuple[float, float],
                   detection_threshold_db: float, transmitter_altitude_m: float) -> _Problem:
    """The arrays of the fit: detections first, then non-detections as upper bounds."""
    lat = np.array([o.latitude for o in ordered], dtype=float)
    lon = np.array([o.longitude for o in ordered], dtype=float)
    det_mask = np.array([o.detected for o in ordered])
    fspl0 = free_space_path_loss_db(REFERENCE_DISTANCE_KM, np.array([o.frequency_hz for o in ordered]))
    measured = np.array([o.signal_power_dbm if o.detected else float(o.noise_power_dbm) + detection_threshold_db
                         for o in ordered], dtype=float)
    dz2 = ((np.array([o.altitude_m for o in ordered], dtype=float) - transmitter_altitude_m) / 1000.0) ** 2
    return _Problem(lat, lon, det_mask, measured + fspl0, fspl0, dz2 + MIN_DISTANCE_KM**2, sigma, n_bounds,
                    use_prior=int(det_mask.sum()) < 5)


@dataclasses.dataclass(frozen=True)
class _SearchFrame:
    """The tangent plane of the search (centred on the detecting receivers) and its grid."""

    lat0: float
    lon0: float
    receivers_x: np.ndarray
    receivers_y: np.ndarray
    grid_x: np.ndarray  # flattened
    grid_y: np.ndarray


def _grid_search(problem: _Problem, search_margin_km: float, grid_points: int, starts: int,
                 chi2: float) -> tuple[_SearchFrame, list[tuple[np.ndarray, float, float]]]:
    """Step 1: the cost profiled over (EIRP, n) on a grid; the distinct local minima that could
    plausibly win, as (grid position, EIRP, n) starts for the refinement."""
    det = problem.detected
    lat0, lon0 = float(np.mean(problem.lat[det])), float(np.mean(problem.lon[det]))
    rx, ry = latlon_to_tangent(problem.lat, problem.lon, lat0, lon0)
    xs = np.linspace(rx.min() - search_margin_km, rx.max() + search_margin_km, grid_points)
    ys = np.linspace(ry.min() - search_margin_km, ry.max() + search_margin_km, grid_points)
    gx, gy = np.meshgrid(xs, ys)
    glat, glon = tangent_to_latlon(gx.ravel(), gy.ravel(), lat0, lon0)
    gcost, gE, gn = _profile(problem, glat, glon)
    start_idx = _local_minima(gcost.reshape(gx.shape), starts)
    start_idx = [i for i in start_idx if gcost[i] <= gcost[start_idx[0]] + 2.0 * chi2]
    frame = _SearchFrame(lat0, lon0, rx, ry, gx.ravel(), gy.ravel())
    return frame, [(np.array([frame.grid_x[i], frame.grid_y[i]]), float(gE[i]), float(gn[i])) for i in start_idx]


def _refine(problem: _Problem, frame: _SearchFrame, candidates: list[tuple[np.ndarray, float, float]],
            search_margin_km: float) -> tuple[float, float, float, float]:
    """Step 2: robust nonlinear least squares from each start; the lowest cost wins.
    Returns (latitude, longitude, EIRP dBm, path-loss exponent)."""
    from scipy.optimize import least_squares  # imported when a session is localized, not at load

    def fun(p: np.ndarray) -> np.ndarray:
        return _normalised_and_jacobian(problem, p, frame.lat0, frame.lon0)[0]

    def jac(p: np.ndarray) -> np.ndarray:
        return _normalised_and_jacobian(problem, p, frame.lat0, frame.lon0)[1]

    n_lo, n_hi = problem.n_bounds
    eps_n = 1e-6 * (n_hi - n_lo)
    rx, ry = frame.receivers_x, frame.receivers_y
    # keep the position within a box about the receivers (also keeps the tangent plane valid)
    box_lo = [rx.min() - 5 * search_margin_km, ry.min() - 5 * search_margin_km, -np.inf, n_lo]
    box_hi = [rx.max() + 5 * search_margin_km, ry.max() + 5 * search_margin_km, np.inf, n_hi]
    best = None
    for xy, eirp0, n0 in candidates:
        p0 = np.array([xy[0], xy[1], eirp0, np.clip(n0, n_lo + eps_n, n_hi - eps_n)])
        sol = least_squares(fun, p0, jac=jac, method="trf", loss="soft_l1", f_scale=1.0,
                            bounds=(box_lo, box_hi), x_scale=np.array([10.0, 10.0, 1.0, 0.1]),
                            xtol=1e-7, ftol=1e-8, gtol=1e-8, max_nfev=100)
        if best is None or sol.cost < best.cost:
            best = sol
    p = best.x
    est_lat, est_lon = (float(v) for v in tangent_to_latlon(p[0], p[1], frame.lat0, frame.lon0))
    return est_lat, (est_lon + 180.0) % 360.0 - 180.0, float(p[2]), float(p[3])


@dataclasses.dataclass(frozen=True)
class _LinearFit:
    cost: float  # robust cost at the estimate
    variance_factor: float  # (residual scale / prior scale)^2, at least 1
    normalised_residuals: np.ndarray
    cov_xy: np.ndarray  # km^2, position block of the parameter covariance
    semi_major_km: float  # linearised ellipse
    semi_minor_km: float


def _linearised_uncertainty(problem: _Problem, est_lat: float, est_lon: float, eirp: float, n_hat: float,
                            chi2: float) -> _LinearFit:
    """Step 3: the Jacobian covariance at the estimate, in a frame centred on it."""
    r_norm = _normalised(problem, est_lat, est_lon, eirp, n_hat)
    cost_min = _robust_cost(r_norm)
    det_mask = problem.detected
    active = np.concatenate([det_mask | (r_norm[:len(det_mask)] > 0), np.ones(int(problem.use_prior), dtype=bool)])
    dof = int(active.sum()) - 4
    variance_factor = max(1.0, cost_min / dof) if dof > 0 else 1.0
    J = _normalised_and_jacobian(problem, np.array([0.0, 0.0, eirp, n_hat]), est_lat, est_lon)[1][active]
    cov = np.linalg.pinv(J.T @ J) * variance_factor  # normalised residuals: s^2/sigma^2 factor
    cov_xy = cov[:2, :2]
    evals = np.clip(np.linalg.eigvalsh(cov_xy), 0.0, None)
    return _LinearFit(cost_min, variance_factor, r_norm, cov_xy, math.sqrt(chi2 * evals[1]), math.sqrt(chi2 * evals[0]))


def _likelihood_ellipse(problem: _Problem, est_lat: float, est_lon: float, fit: _LinearFit, chi2: float,
                        search_margin_km: float) -> tuple[float, float, float, bool]:
    """Step 4: the profile-likelihood region about the estimate, summarised by its moment ellipse.
    Returns (semi-major km, semi-minor km, orientation deg, region reaches the search edge)."""
    ex_r, ny_r = latlon_to_tangent(problem.lat, problem.lon, est_lat, est_lon)
    domain = (ex_r.min() - search_margin_km, ex_r.max() + search_margin_km,
              ny_r.min() - search_margin_km, ny_r.max() + search_margin_km)
    region, cell, unbounded, at_edge = _likelihood_region(
        problem, est_lat, est_lon, fit.semi_major_km, chi2 * fit.variance_factor,
        float(np.sum(fit.normalised_residuals**2)), domain)
    major, minor, orientation = _region_ellipse(region, cell, fit.cov_xy, chi2, "moment")
    return major, minor, orientation, bool(unbounded or at_edge)
