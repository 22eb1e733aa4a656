"""GNSS time of every sample: a time model fitted from a capture's per-frame GPS timestamps.

A KiwiSDR tags each frame of IQ with the GPS time of its first sample (seconds of the GPS week and
nanoseconds) and the age of the GNSS fix the tag was computed from. Only tags from a fresh fix
(age 0) are trusted; stale tags (extrapolated by the receiver), tags without a solution and gross
outliers are left out. The header rate of a recording is a rounded integer, and each receiver's
clock runs at its own true rate, so the model measures the rate instead of assuming it.

Model: the fresh fixes are grouped into fix intervals (runs of consecutive fresh frames, split into
spans of at most ``KNOT_SPAN_S``); each interval gives one knot (its mean sample index and its mean
time), which averages the tag jitter. Between knots the model is
linear, so each stretch between two fix intervals has its own rate and offset (a receiver clock
that wanders is followed); before the first and after the last knot the nearest stretch's rate
extrapolates. The global least-squares rate is the measured rate the model reports. Times are kept as integer nanoseconds since the GPS epoch (1980-01-06) so sample 0
is known to the nanosecond; float arithmetic happens only on small differences.

GPS week: the week number is not transmitted; it is resolved with an approximate UTC time of the
capture (the file name's start, or the capture's start time), which must be within a few days.
GPS - UTC: the leap seconds in force at that time (18 s since 2017-01-01).

Pure numpy; the model serialises to JSON (``to_json`` / ``from_json``) for the SigMF metadata and
the measurement row.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

import numpy as np

from heimdall_pipeline.capture import GpsTimestamp

GPS_EPOCH = datetime(1980, 1, 6, tzinfo=timezone.utc)
UNIX_TO_GPS_EPOCH_S = 315_964_800  # seconds from 1970-01-01 to 1980-01-06 (no leap seconds in UTC arithmetic)
SECONDS_PER_WEEK = 604_800
NS = 1_000_000_000
WEEK_NS = SECONDS_PER_WEEK * NS
# GPS - UTC after each leap second (UTC dates the new value takes effect).
LEAP_SECONDS = (
    (datetime(1981, 7, 1, tzinfo=timezone.utc), 1), (datetime(1982, 7, 1, tzinfo=timezone.utc), 2),
    (datetime(1983, 7, 1, tzinfo=timezone.utc), 3), (datetime(1985, 7, 1, tzinfo=timezone.utc), 4),
    (datetime(1988, 1, 1, tzinfo=timezone.utc), 5), (datetime(1990, 1, 1, tzinfo=timezone.utc), 6),
    (datetime(1991, 1, 1, tzinfo=timezone.utc), 7), (datetime(1992, 7, 1, tzinfo=timezone.utc), 8),
    (datetime(1993, 7, 1, tzinfo=timezone.utc), 9), (datetime(1994, 7, 1, tzinfo=timezone.utc), 10),
    (datetime(1996, 1, 1, tzinfo=timezone.utc), 11), (datetime(1997, 7, 1, tzinfo=timezone.utc), 12),
    (datetime(1999, 1, 1, tzinfo=timezone.utc), 13), (datetime(2006, 1, 1, tzinfo=timezone.utc), 14),
    (datetime(2009, 1, 1, tzinfo=timezone.utc), 15), (datetime(2012, 7, 1, tzinfo=timezone.utc), 16),
    (datetime(2015, 7, 1, tzinfo=timezone.utc), 17), (datetime(2017, 1, 1, tzinfo=timezone.utc), 18),
)
KNOT_SPAN_S = 1.0  # a run of fresh fixes longer than this gives several knots
MIN_OUTLIER_THRESHOLD_S = 5e-6  # fixes further than this (or 6 robust sigmas) from the fit are outliers
MIN_FIX_SPAN_S = 0.5  # fresh fixes must span at least this long to measure a rate
TIME_MODEL_VERSION = 1


class UntimedCaptureError(ValueError):
    """The capture's timestamps cannot place its samples in GPS time; the message says why."""


def leap_seconds_at(utc: datetime) -> int:
    """GPS - UTC in seconds at a UTC time (0 before 1981-07-01)."""
    utc = _as_utc(utc)
    value = 0
    for start, leap in LEAP_SECONDS:
        if utc >= start:
            value = leap
    return value


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"time {value.isoformat()} has no time zone; pass an aware UTC datetime")
    return value.astimezone(timezone.utc)


def utc_to_gps_ns(utc: datetime) -> int:
    """Integer nanoseconds since the GPS epoch of an aware UTC datetime (microsecond precision)."""
    utc = _as_utc(utc)
    delta = utc - GPS_EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros * 1_000 + leap_seconds_at(utc) * NS


def gps_ns_to_utc_ns(gps_ns: int, leap_seconds: int) -> int:
    """Integer nanoseconds since the Unix epoch (UTC) of a GPS time."""
    return int(gps_ns) - leap_seconds * NS + UNIX_TO_GPS_EPOCH_S * NS


def format_utc_ns(unix_ns: int) -> str:
    """ISO 8601 UTC with nine decimals, as SigMF's core:datetime allows: 2020-08-13T06:52:20.123456789Z."""
    seconds, nanos = divmod(int(unix_ns), NS)
    whole = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return f"{whole:%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z"


def resolve_gps_ns(gps_seconds_of_week, gps_nanoseconds, anchor_gps_ns: int):
    """Absolute GPS nanoseconds of seconds-of-week tags: the week that puts each nearest the anchor
    (a tie to the even week). Integer arithmetic throughout; scalars give an int, arrays an int64 array."""
    sow_ns = np.asarray(gps_seconds_of_week, dtype=np.int64) * NS + np.asarray(gps_nanoseconds, dtype=np.int64)
    week, rest = np.divmod(np.int64(anchor_gps_ns) - sow_ns, WEEK_NS)
    week = week + ((2 * rest > WEEK_NS) | ((2 * rest == WEEK_NS) & (week % 2 == 1)))
    absolute = week * WEEK_NS + sow_ns
    return int(absolute) if absolute.ndim == 0 else absolute


@dataclasses.dataclass(frozen=True)
class TimeModel:
    """Sample index -> GPS time of one capture (see the module docstring).

    knot_samples / knot_gps_ns: the knots (fractional sample index, integer ns since the GPS
        epoch); at least one.
    sample_rate_hz: the measured rate (least squares over the fresh fixes); it extrapolates
        when there is a single knot.
    sample_rate_spread_hz: standard deviation of the rates between consecutive knots (0 with
        fewer than three knots).
    nominal_sample_rate_hz: the rate the source claimed (file header / server message).
    timing_rms_ns: rms of the fresh fixes around the model: the timing-quality figure (the
        tags' own jitter plus what the model does not follow).
    fresh_fixes / rejected_fixes / stale_or_missing_frames: what the fit used and left out.
    max_fix_gap_s: the longest stretch without a fresh fix, within the fixes' span.
    leap_seconds: GPS - UTC used for the UTC figures.
    """

    knot_samples: tuple[float, ...]
    knot_gps_ns: tuple[int, ...]
    sample_rate_hz: float
    sample_rate_spread_hz: float
    nominal_sample_rate_hz: float
    timing_rms_ns: float
    fresh_fixes: int
    rejected_fixes: int
    stale_or_missing_frames: int
    max_fix_gap_s: float
    leap_seconds: int

    # ---- evaluation -------------------------------------------------------------------------

    def gps_seconds_since(self, reference_gps_ns: int, sample_index) -> np.ndarray | float:
        """GPS time of (fractional) sample indices in seconds after reference_gps_ns (float64).

        The knots' integer nanoseconds are offset by the reference before any float arithmetic,
        so the result keeps sub-nanosecond resolution for captures of any absolute date.
        """
        idx = np.asarray(sample_index, dtype=np.float64)
        ks = np.asarray(self.knot_samples, dtype=np.float64)
        kt = self._knot_seconds_since(reference_gps_ns)
        first_rate, last_rate = self._end_rates()
        if len(ks) == 1:
            out = kt[0] + (idx - ks[0]) / self.sample_rate_hz
        else:
            out = np.interp(idx, ks, kt)
            out = np.where(idx < ks[0], kt[0] + (idx - ks[0]) / first_rate, out)
            out = np.where(idx > ks[-1], kt[-1] + (idx - ks[-1]) / last_rate, out)
        return float(out) if np.ndim(out) == 0 else out

    def sample_index_at(self, reference_gps_ns: int, seconds) -> np.ndarray | float:
        """The inverse: fractional sample index at GPS times given in seconds after reference_gps_ns."""
        t = np.asarray(seconds, dtype=np.float64)
        ks = np.asarray(self.knot_samples, dtype=np.float64)
        kt = self._knot_seconds_since(reference_gps_ns)
        first_rate, last_rate = self._end_rates()
        if len(ks) == 1:
            out = ks[0] + (t - kt[0]) * self.sample_rate_hz
        else:
            out = np.interp(t, kt, ks)
            out = np.where(t < kt[0], ks[0] + (t - kt[0]) * first_rate, out)
            out = np.where(t > kt[-1], ks[-1] + (t - kt[-1]) * last_rate, out)
        return float(out) if np.ndim(out) == 0 else out

    def _knot_seconds_since(self, reference_gps_ns: int) -> np.ndarray:
        # int64 holds GPS nanoseconds until 2272: the difference is exact before it becomes a float
        return (np.asarray(self.knot_gps_ns, dtype=np.int64) - np.int64(reference_gps_ns)) / NS

    def _end_rates(self) -> tuple[float, float]:
        """The rates that extrapolate before the first and after the last knot: those of the
        nearest stretch (a wandering clock is followed to the ends), the global one with one knot."""
        rates = self.knot_rates_hz
        return (rates[0], rates[-1]) if rates else (self.sample_rate_hz, self.sample_rate_hz)

    @property
    def sample0_gps_ns(self) -> int:
        """GPS time of sample 0, integer nanoseconds since the GPS epoch."""
        offset_s = self.gps_seconds_since(self.knot_gps_ns[0], 0.0)
        return self.knot_gps_ns[0] + int(round(offset_s * NS))

    @property
    def sample0_utc_ns(self) -> int:
        """UTC time of sample 0, integer nanoseconds since the Unix epoch."""
        return gps_ns_to_utc_ns(self.sample0_gps_ns, self.leap_seconds)

    @property
    def core_datetime(self) -> str:
        """SigMF ``core:datetime`` of sample 0, to the nanosecond."""
        return format_utc_ns(self.sample0_utc_ns)

    @property
    def sample0_utc(self) -> datetime:
        """UTC of sample 0 as a datetime (microseconds; use sample0_utc_ns for nanoseconds)."""
        seconds, nanos = divmod(self.sample0_utc_ns, NS)
        return datetime.fromtimestamp(seconds, tz=timezone.utc).replace(microsecond=nanos // 1000)

    @property
    def knot_rates_hz(self) -> list[float]:
        """The rate of each stretch between consecutive knots."""
        return [(self.knot_samples[i + 1] - self.knot_samples[i]) * NS / (self.knot_gps_ns[i + 1] - self.knot_gps_ns[i])
                for i in range(len(self.knot_samples) - 1)]

    # ---- JSON -------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """The figures a measurement row and the UI show (no knots)."""
        return {
            "core_datetime": self.core_datetime,
            "sample_rate_hz": self.sample_rate_hz,
            "sample_rate_spread_hz": self.sample_rate_spread_hz,
            "nominal_sample_rate_hz": self.nominal_sample_rate_hz,
            "timing_rms_ns": self.timing_rms_ns,
            "fresh_fixes": self.fresh_fixes,
            "rejected_fixes": self.rejected_fixes,
            "stale_or_missing_frames": self.stale_or_missing_frames,
            "max_fix_gap_s": self.max_fix_gap_s,
            "leap_seconds": self.leap_seconds,
        }

    def to_json(self) -> dict[str, Any]:
        """Everything needed to rebuild the model (integers stay exact in JSON)."""
        return {"version": TIME_MODEL_VERSION, **self.summary(),
                "knot_samples": list(self.knot_samples), "knot_gps_ns": list(self.knot_gps_ns)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TimeModel":
        if data.get("version") != TIME_MODEL_VERSION:
            raise ValueError(f"time model version {data.get('version')!r} is not {TIME_MODEL_VERSION}")
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["knot_samples"] = tuple(float(v) for v in data["knot_samples"])
        values["knot_gps_ns"] = tuple(int(v) for v in data["knot_gps_ns"])
        return cls(**values)


def is_fresh(stamp: GpsTimestamp) -> bool:
    """A tag to trust: it has a solution and comes from a fresh fix (or its source gives no age)."""
    return stamp.has_solution and (stamp.fix_age_s is None or stamp.fix_age_s == 0)


def _fix_intervals(indices: np.ndarray, frame_step: int, max_span: float) -> list[tuple[int, int]]:
    """Group sorted sample indices into runs of consecutive frames, each at most max_span samples
    long: (start, end) positions, end exclusive."""
    n = len(indices)
    gaps = np.flatnonzero(np.diff(indices) > frame_step) + 1  # a run ends before each gap
    groups: list[tuple[int, int]] = []
    start = 0
    while start < n:
        next_gap = int(np.searchsorted(gaps, start, side="right"))
        run_end = int(gaps[next_gap]) if next_gap < len(gaps) else n
        span_end = start + int(np.searchsorted(indices[start:] - indices[start], max_span, side="right"))
        end = min(run_end, span_end)
        groups.append((start, end))
        start = end
    return groups


def fit_time_model(
    timestamps: Iterable[GpsTimestamp],
    nominal_sample_rate_hz: float,
    approximate_start_utc: datetime,
    n_samples: int | None = None,
) -> TimeModel:
    """Fit a TimeModel from a capture's per-frame timestamps.

    approximate_start_utc: the capture's start as far as known without GNSS (file name, wall
    clock); it resolves the GPS week and the leap seconds, so it must be right within days.
    n_samples: the capture's length, to count the frames without a fresh fix.
    Raises UntimedCaptureError when fewer than two fresh fixes survive or they span less than
    MIN_FIX_SPAN_S.
    """
    if not (math.isfinite(nominal_sample_rate_hz) and nominal_sample_rate_hz > 0):
        raise ValueError(f"nominal sample rate {nominal_sample_rate_hz} must be positive")
    # one row per tag, in sample order: index, seconds of week, nanoseconds, fresh (see is_fresh)
    tags = np.array([(s.sample_index, s.gps_seconds, s.gps_nanoseconds, bool(is_fresh(s))) for s in timestamps],
                    dtype=np.int64).reshape(-1, 4)
    tags = tags[np.argsort(tags[:, 0], kind="stable")]
    sample_index = tags[:, 0]
    fresh = (tags[:, 3] != 0) & (tags[:, 2] >= 0) & (tags[:, 2] < NS)
    anchor = utc_to_gps_ns(approximate_start_utc)
    leap = leap_seconds_at(approximate_start_utc)
    n_fresh = int(fresh.sum())
    if n_fresh < 2:
        raise UntimedCaptureError(f"{n_fresh} fresh GNSS fix(es) among {len(tags)} frame timestamp(s); need 2")
    idx = sample_index[fresh]
    abs_ns = resolve_gps_ns(tags[fresh, 1], tags[fresh, 2], anchor)
    ref = int(np.median(abs_ns - np.round(idx * (NS / nominal_sample_rate_hz)).astype(np.int64)))
    t = (abs_ns - ref).astype(np.float64) / NS  # seconds, small numbers

    # Robust first line: median rate between distant fixes, median offset; then drop outliers and refit.
    keep = _robust_inliers(idx.astype(np.float64), t, nominal_sample_rate_hz)
    if keep.sum() < 2:
        raise UntimedCaptureError("fresh GNSS fixes disagree with each other; no two are consistent")
    x, y = idx[keep].astype(np.float64), t[keep]
    span_s = (x[-1] - x[0]) / nominal_sample_rate_hz
    if span_s < MIN_FIX_SPAN_S:
        raise UntimedCaptureError(f"fresh GNSS fixes span {span_s:.3f} s; need {MIN_FIX_SPAN_S} s to measure the rate")
    x0 = x.mean()
    period, intercept = np.polyfit(x - x0, y, 1)  # seconds per sample
    rate = 1.0 / period

    # Knots: one per fix interval, at the interval's mean index and mean time
    frame_step = int(np.median(np.diff(sample_index))) if len(sample_index) > 1 else 1
    groups = _fix_intervals(x.astype(np.int64), max(frame_step, 1), KNOT_SPAN_S * rate)
    # (a line's mean time lies at its mean index, whatever its slope)
    knot_x = [float(x[start:end].mean()) for start, end in groups]
    knot_t = [float(y[start:end].mean()) for start, end in groups]
    knot_ns = tuple(ref + int(round(v * NS)) for v in knot_t)
    model = TimeModel(
        knot_samples=tuple(knot_x),
        knot_gps_ns=knot_ns,
        sample_rate_hz=float(rate),
        sample_rate_spread_hz=0.0,
        nominal_sample_rate_hz=float(nominal_sample_rate_hz),
        timing_rms_ns=0.0,
        fresh_fixes=int(keep.sum()),
        rejected_fixes=int((~keep).sum()),
        stale_or_missing_frames=_stale_frames(len(tags), n_fresh, n_samples, frame_step),
        max_fix_gap_s=float(np.max(np.diff(x)) / rate) if len(x) > 1 else 0.0,
        leap_seconds=leap,
    )
    residual = (y - np.asarray(model.gps_seconds_since(ref, x))) * NS
    rates = model.knot_rates_hz
    return dataclasses.replace(
        model,
        timing_rms_ns=float(np.sqrt(np.mean(residual**2))),
        sample_rate_spread_hz=float(np.std(rates, ddof=1)) if len(rates) >= 2 else 0.0,
    )


def _robust_inliers(x: np.ndarray, t: np.ndarray, nominal_rate: float) -> np.ndarray:
    """Fixes consistent with a robust line through them (median pairwise rate, median offset)."""
    n = len(x)
    # pairs half the set apart: long baselines make the rate robust to the tags' jitter
    half = max(n // 2, 1)
    dx = x[half:] - x[:n - half]
    dt = t[half:] - t[:n - half]
    ok = (dx > 0) & (dt > 0)
    period = float(np.median(dt[ok] / dx[ok])) if ok.any() else 1.0 / nominal_rate
    if not 0.5 / nominal_rate < period < 2.0 / nominal_rate:
        period = 1.0 / nominal_rate  # the median pair was an outlier pair; fall back to the claim
    residual = t - x * period
    centre = float(np.median(residual))
    sigma = 1.4826 * float(np.median(np.abs(residual - centre)))
    keep = np.abs(residual - centre) <= max(MIN_OUTLIER_THRESHOLD_S, 6.0 * sigma)
    if keep.sum() >= 3:  # second pass on the inliers with a least-squares line
        p = np.polyfit(x[keep], t[keep], 1)
        residual = t - np.polyval(p, x)
        sigma = 1.4826 * float(np.median(np.abs(residual[keep] - np.median(residual[keep]))))
        keep = np.abs(residual) <= max(MIN_OUTLIER_THRESHOLD_S, 6.0 * sigma)
    return keep


def _stale_frames(tags: int, fresh: int, n_samples: int | None, frame_step: int) -> int:
    frames = tags
    if n_samples is not None and frame_step > 0:
        frames = max(frames, math.ceil(n_samples / frame_step))
    return frames - fresh
