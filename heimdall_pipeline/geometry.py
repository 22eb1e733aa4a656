"""Plane geometry about a point of the Earth (tangent plane, confidence quantile), shared by the
RSS (rss/) and TDoA (tdoa/) estimators."""

from __future__ import annotations

import math

import numpy as np

from heimdall_pipeline.propagation import EARTH_RADIUS_KM


def chi2_2dof_quantile(confidence: float) -> float:
    """Quantile of the chi-square distribution with 2 dof (closed form); 0.95 -> 5.991."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence {confidence} must be in (0, 1)")
    return -2.0 * math.log(1.0 - confidence)


def tangent_to_latlon(x_km, y_km, lat0: float, lon0: float) -> tuple[np.ndarray, np.ndarray]:
    """Equirectangular tangent plane about (lat0, lon0): x east, y north, km -> degrees."""
    lat = lat0 + np.degrees(np.asarray(y_km, dtype=float) / EARTH_RADIUS_KM)
    lon = lon0 + np.degrees(np.asarray(x_km, dtype=float) / (EARTH_RADIUS_KM * math.cos(math.radians(lat0))))
    return lat, lon


def latlon_to_tangent(lat, lon, lat0: float, lon0: float) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of tangent_to_latlon."""
    x = np.radians(np.asarray(lon, dtype=float) - lon0) * EARTH_RADIUS_KM * math.cos(math.radians(lat0))
    y = np.radians(np.asarray(lat, dtype=float) - lat0) * EARTH_RADIUS_KM
    return x, y
