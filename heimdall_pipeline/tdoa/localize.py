"""TDoA localization of one session: timed captures in, a position with its 95 % region out, or
the reason the session is not localizable by TDoA (never an invented point)."""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Sequence

import numpy as np

from heimdall_pipeline.propagation import haversine_km, propagation_delay_s
from heimdall_pipeline.tdoa.align import TimedCapture, align
from heimdall_pipeline.tdoa.band import NoTimeStructureError, signal_band
from heimdall_pipeline.tdoa.correlate import MIN_WINDOWS, frequency_offsets, pair_lags
from heimdall_pipeline.tdoa.allowance import REAL_RECEIVER_CLASS, assumption_text, timing_allowance
from heimdall_pipeline.tdoa.crosscheck import cross_check
from heimdall_pipeline.tdoa.solve import PairGeometry, Region95, modelled_lags_s, solve

MIN_RECEIVERS = 3
DEFAULT_WINDOW_S = 0.5  # many windows make their scatter (the lag errors) well measured
DEFAULT_MAX_FREQUENCY_OFFSET_HZ = 10.0
MIN_SIGMA_S = 10e-9  # no lag is trusted to better than 10 ns
MAX_SPREAD_FRACTION = 0.25  # windows scattered over this much of the allowed lags: no real peak
METHOD = "tdoa"


@dataclasses.dataclass(frozen=True)
class TdoaResult:
    """What TDoA made of a session (JSON via to_json).

    localized: False with ``reason`` when the session is not localizable by TDoA.
    pairs: per pair, the measured lag (arrival at a minus at b), its standard error, the window
        statistics, the fit residual and, with a truth, the lag the true position gives and the
        error; receivers: each capture's id, position, timing figures and whether it was used.
    truth: with a truth, {latitude, longitude, error_km, inside_region}.
    """

    localized: bool
    reason: str | None
    latitude: float | None = None
    longitude: float | None = None
    region: Region95 | None = None
    pairs: tuple[dict[str, Any], ...] = ()
    receivers: tuple[dict[str, Any], ...] = ()
    band_hz: tuple[float, float] | None = None
    frequency_offsets_hz: dict[str, float] | None = None
    window_s: float = DEFAULT_WINDOW_S
    common_span_s: float | None = None
    sample_rate_hz: float | None = None
    truth: dict[str, Any] | None = None
    timing_model: str | None = None
    cross_check: dict[str, Any] | None = None
    left_out: dict[str, str] | None = None

    @property
    def error_km(self) -> float | None:
        return None if self.truth is None else self.truth.get("error_km")

    def to_json(self) -> dict[str, Any]:
        out = {
            "method": METHOD,
            "localized": self.localized,
            "reason": self.reason,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "region_95": None if self.region is None else {
                **self.region.to_json(), "polygon": [list(p) for p in self.region.polygon((self.latitude, self.longitude))]},
            "pairs": [dict(p) for p in self.pairs],
            "receivers": [dict(r) for r in self.receivers],
            "band_hz": None if self.band_hz is None else list(self.band_hz),
            "frequency_offsets_hz": self.frequency_offsets_hz,
            "window_s": self.window_s,
            "common_span_s": self.common_span_s,
            "sample_rate_hz": self.sample_rate_hz,
            "truth": self.truth,
            "timing_model": self.timing_model,
            "cross_check": self.cross_check,
            "left_out": self.left_out,
        }
        return out

    @property
    def receivers_used(self) -> tuple[str, ...]:
        return tuple(r["receiver_id"] for r in self.receivers if r["used"])



def _receiver_report(c: TimedCapture, used: bool) -> dict[str, Any]:
    report: dict[str, Any] = {"receiver_id": c.receiver_id, "latitude": c.latitude, "longitude": c.longitude,
                              "timed": c.is_timed, "used": used}
    if c.time_model is not None:
        m = c.time_model
        report.update(sample_rate_hz=m.sample_rate_hz, sample_rate_spread_hz=m.sample_rate_spread_hz,
                      timing_rms_ns=m.timing_rms_ns, core_datetime=m.core_datetime)
    else:
        report["untimed_reason"] = c.untimed_reason
    if c.gnss is not None:
        report["gnss_quality"] = c.gnss.to_json()
    return report


def localize_tdoa(captures: Sequence[TimedCapture], *, window_s: float = DEFAULT_WINDOW_S,
                  max_frequency_offset_hz: float = DEFAULT_MAX_FREQUENCY_OFFSET_HZ,
                  timing_class: str = REAL_RECEIVER_CLASS,
                  truth: tuple[float, float] | None = None) -> TdoaResult:
    """Locate the transmitter heard in the captures by time difference of arrival.

    max_frequency_offset_hz: how far apart two receivers' tunings may be (searched and removed
    before correlating); e.g. 1 ppm of the centre frequency for receivers without GNSS-disciplined
    tuning.
    timing_class: the receivers' timing class (allowance.py): "kiwisdr" for real receivers (a
    systematic offset per receiver the lag scatter cannot show), "simulated" for the simulator's.
    Captures whose GNSS quality is an error (dsp/gnss_quality.py) are left out by name.

    truth: the true (lat, lon) when known (simulations, reference recordings): the result then
    carries the position error and each pair's lag error.
    """
    left_out = {c.receiver_id: c.untimed_reason or "untimed" for c in captures if not c.is_timed}
    left_out.update({c.receiver_id: "GNSS quality: " + "; ".join(c.gnss.problems) for c in captures
                     if c.is_timed and c.gnss is not None and c.gnss.severity == "error"})
    timed = [c for c in captures if c.receiver_id not in left_out]

    def refuse(reason: str, used=(), **extra) -> TdoaResult:
        receivers = tuple(_receiver_report(c, c.receiver_id in used) for c in captures)
        return TdoaResult(localized=False, reason=f"not localizable by TDoA: {reason}", receivers=receivers,
                          window_s=window_s, truth=None if truth is None else {"latitude": truth[0], "longitude": truth[1]},
                          left_out=left_out or None, **extra)

    if len(timed) < MIN_RECEIVERS:
        named = "; ".join(f"{rid}: {why}" for rid, why in left_out.items())
        return refuse(f"{len(timed)} timed receiver(s) with usable GNSS time, TDoA needs {MIN_RECEIVERS}"
                      + (f" (left out: {named})" if named else ""))
    # the band first, from each capture's own spectrum: a carrier is refused before anything is
    # resampled, and the captures are aligned cut down to the band
    try:
        band = signal_band([c.samples for c in timed],
                           float(np.median([c.time_model.nominal_sample_rate_hz for c in timed])))
    except NoTimeStructureError as exc:
        return refuse(str(exc))
    try:
        aligned = align(timed, band)
    except ValueError as exc:
        return refuse(str(exc))
    if aligned.duration_s < MIN_WINDOWS * window_s:
        return refuse(f"the timed captures share {aligned.duration_s:.2f} s, less than {MIN_WINDOWS} windows of "
                      f"{window_s:g} s", common_span_s=aligned.duration_s, sample_rate_hz=aligned.sample_rate_hz)
    bounds = {}
    for i, j in itertools.combinations(range(len(timed)), 2):
        a, b = timed[i], timed[j]
        bounds[(i, j)] = propagation_delay_s(haversine_km(a.latitude, a.longitude, b.latitude, b.longitude))
    offsets = frequency_offsets(aligned, band, [0.0] + [bounds[(0, i)] for i in range(1, len(timed))], window_s,
                                max_frequency_offset_hz)
    measured = pair_lags(aligned, band, bounds, window_s=window_s, offsets_hz=offsets)
    usable = [p for p in measured if p.window_spread_s <= MAX_SPREAD_FRACTION * max(p.max_lag_s, 1.0 / aligned.sample_rate_hz)]
    used = {r for p in usable for r in (p.receiver_a, p.receiver_b)}
    common = dict(common_span_s=aligned.duration_s, sample_rate_hz=aligned.sample_rate_hz,
                  band_hz=(band.low_hz, band.high_hz),
                  frequency_offsets_hz={c.receiver_id: float(o) for c, o in zip(timed, offsets)})
    if len(usable) < 2 or len(used) < MIN_RECEIVERS:
        return refuse(f"only {len(usable)} pair(s) over {len(used)} receiver(s) give a consistent correlation peak "
                      f"(of {len(bounds)} pairs)", used=used, **common)

    by_id = {c.receiver_id: c for c in timed}
    allowances = {rid: timing_allowance(by_id[rid], timing_class) for rid in sorted(used)}
    sigmas = {rid: a.sigma_s for rid, a in allowances.items()}
    geometry = []
    for p in usable:
        a, b = by_id[p.receiver_a], by_id[p.receiver_b]
        geometry.append(PairGeometry(a=(a.latitude, a.longitude), b=(b.latitude, b.longitude), lag_s=p.lag_s,
                                     sigma_s=math.hypot(p.standard_error_s, MIN_SIGMA_S), ids=(a.receiver_id, b.receiver_id)))
    solution = solve(geometry, receivers=len(used), receiver_sigmas_s=sigmas)
    checked = cross_check(geometry, solution, sigmas, lambda subset: solve(
        subset, receivers=len({i for g in subset for i in g.ids}), receiver_sigmas_s=sigmas))

    truth_lags = None if truth is None else modelled_lags_s(geometry, truth[0], truth[1])
    pairs = []
    for k, (p, g) in enumerate(zip(usable, geometry)):
        row = {**p.to_json(), "sigma_s": math.sqrt(g.sigma_s**2 + sigmas[p.receiver_a]**2 + sigmas[p.receiver_b]**2),
               "residual_s": solution.residuals_s[k]}
        if truth_lags is not None:
            row.update(true_lag_s=float(truth_lags[k]), lag_error_s=float(p.lag_s - truth_lags[k]))
        pairs.append(row)
    truth_report = None
    if truth is not None:
        truth_report = {"latitude": truth[0], "longitude": truth[1],
                        "error_km": float(haversine_km(solution.latitude, solution.longitude, truth[0], truth[1])),
                        "inside_region": solution.region.contains((solution.latitude, solution.longitude), truth)}
    receivers = []
    for c in captures:
        report = _receiver_report(c, c.receiver_id in used)
        if c.receiver_id in allowances:
            report["timing_allowance"] = allowances[c.receiver_id].to_json()
        if c.receiver_id in left_out:
            report["left_out"] = left_out[c.receiver_id]
        receivers.append(report)
    return TdoaResult(
        localized=True, reason=None, latitude=solution.latitude, longitude=solution.longitude, region=solution.region,
        pairs=tuple(pairs), receivers=tuple(receivers), window_s=window_s, truth=truth_report,
        timing_model=assumption_text(list(allowances.values())), cross_check=checked, left_out=left_out or None,
        **common)
