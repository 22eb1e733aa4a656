"""The `localizations` row of each estimator's result: the signal code returns results and knows
no table; the mapping to columns lives here, beside the table it fills."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from heimdall_pipeline.db.measurements_repo import LocalizationRow

if TYPE_CHECKING:  # the estimators (scipy) load where they run
    from heimdall_pipeline.rss import LocalizationResult
    from heimdall_pipeline.tdoa import TdoaResult


def rss_row(result: "LocalizationResult", session_key: str, time: datetime,
            metadata_json: dict[str, Any] | None = None) -> LocalizationRow:
    """The row of a received-power result for a session starting at `time`."""
    return LocalizationRow(
        time=time, session_key=session_key, method=result.method, localizable=result.localizable,
        reason=result.reason, latitude=result.latitude, longitude=result.longitude, eirp_dbm=result.eirp_dbm,
        path_loss_exponent=result.path_loss_exponent, ellipse_semi_major_km=result.ellipse_semi_major_km,
        ellipse_semi_minor_km=result.ellipse_semi_minor_km, ellipse_orientation_deg=result.ellipse_orientation_deg,
        receivers_used=result.receivers_used, residuals=result.residuals_db,
        metadata_json={"receivers_as_bounds": list(result.receivers_as_bounds), **(metadata_json or {})})


def tdoa_row(result: "TdoaResult", session_key: str, time: datetime,
             metadata_json: dict[str, Any] | None = None) -> LocalizationRow:
    """The row of a TDoA result (method 'tdoa') for a session starting at `time`: the region's axes
    in the ellipse columns, the pairs in `pair_lags`, the rest of to_json() (receivers, band,
    offsets, covariance, truth) in metadata_json, each stored once."""
    details = result.to_json()
    method = details.pop("method")
    for stored_in_columns in ("localized", "reason", "latitude", "longitude", "pairs"):
        details.pop(stored_in_columns)
    region = result.region
    if region is not None:
        details["region_95"] = {"confidence": 0.95, "covariance_en_km2": details["region_95"]["covariance_en_km2"]}
    return LocalizationRow(
        time=time, session_key=session_key, method=method,
        localizable=result.localized, reason=result.reason, latitude=result.latitude, longitude=result.longitude,
        ellipse_semi_major_km=None if region is None else region.semi_major_km,
        ellipse_semi_minor_km=None if region is None else region.semi_minor_km,
        ellipse_orientation_deg=None if region is None else region.major_bearing_deg,
        receivers_used=result.receivers_used, pair_lags=[dict(p) for p in result.pairs] or None,
        metadata_json={**details, **(metadata_json or {})})
