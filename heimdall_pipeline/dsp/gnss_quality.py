"""How well a capture is placed on GNSS time: the figures, and a verdict TDoA and the checks share.

A KiwiSDR stamps every frame (512 IQ samples) with the GPS time of its first sample and the age of
the fix that time comes from (jks-prv/Beagle_SDR_GPS rx/rx_sound.cpp: ``last_gps_solution`` =
seconds since the last solution, 255 when there has never been one; the first frame of a stream
carries no time). Between solutions the server extrapolates with its ADC clock estimate, so only
fresh tags are trusted (dsp/timing.py). The figures:

* fresh fixes and the stale-frame fraction (frames without a fresh fix);
* rejected timestamps: all-zero headers, tags hours away from the rest (week or clock glitches),
  and fresh tags the time model's robust fit left out;
* the longest gap between fresh fixes, the tags' rms around the model, the spread of the rate
  between fix intervals (parts per million of the rate).

Verdict: ``error`` leaves the capture out of TDoA (by name, with the reason), ``warn`` keeps it
with the figures shown, ``ok``. A capture deliberately imported untimed is ``warn`` (metrics only,
refused by TDoA with that reason). The thresholds and their reasons are in docs/tdoa.md.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from heimdall_pipeline.dsp.timing import NS, TimeModel, is_fresh, resolve_gps_ns
from heimdall_pipeline.capture import GpsTimestamp
JUMP_S = 3600.0  # a tag this far from the capture's own time is a glitch, not a clock

# warn / error thresholds (docs/tdoa.md)
WARN_STALE_FRACTION = 0.9
WARN_FIX_GAP_S, ERROR_FIX_GAP_S = 3.0, 10.0
WARN_TIMING_RMS_NS, ERROR_TIMING_RMS_NS = 1_000.0, 5_000.0
WARN_RATE_SPREAD_PPM, ERROR_RATE_SPREAD_PPM = 1.0, 10.0  # the KiwiSDR tracks its clock within +-1 ppm
ERROR_REJECTED_FRACTION = 0.5  # of the tags that claim a solution
SHORT_CAPTURE_S = 1.5  # shorter captures are of no use to TDoA (3 windows of 0.5 s): untimed is no fault


@dataclasses.dataclass(frozen=True)
class GnssQuality:
    """One capture's GNSS timing figures and verdict (``severity``: ok / warn / error)."""

    frames: int
    fresh_fixes: int
    stale_frame_fraction: float
    zero_timestamps: int
    jumped_timestamps: int
    outlier_fixes: int
    longest_fix_gap_s: float | None
    timing_rms_ns: float | None
    rate_spread_ppm: float | None
    severity: str
    problems: tuple[str, ...]
    untimed_reason: str | None = None

    @property
    def rejected_timestamps(self) -> int:
        return self.zero_timestamps + self.jumped_timestamps + self.outlier_fixes

    @property
    def usable_for_tdoa(self) -> bool:
        return self.severity != "error" and self.untimed_reason is None

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["problems"] = list(self.problems)
        out["rejected_timestamps"] = self.rejected_timestamps
        return out


def _jumps(stamps: Sequence[GpsTimestamp], model: TimeModel) -> int:
    """Tags with a solution that lie more than JUMP_S from where the model puts their frame."""
    anchor = model.knot_gps_ns[0]
    solved = [s for s in stamps if s.has_solution]
    if not solved:
        return 0
    tags_s = np.array([(resolve_gps_ns(s.gps_seconds, s.gps_nanoseconds, anchor) - anchor) / NS for s in solved])
    modelled_s = model.gps_seconds_since(anchor, np.array([s.sample_index for s in solved], dtype=np.float64))
    return int(np.count_nonzero(np.abs(tags_s - modelled_s) > JUMP_S))


def gnss_quality(timestamps: Sequence[GpsTimestamp], model: TimeModel | None, untimed_reason: str | None,
                 n_samples: int, sample_rate_hz: float, *, imported_untimed: bool = False) -> GnssQuality:
    """The figures and verdict of one capture from its frame tags and its fitted time model (or the
    reason it has none). Untimed: an error, but a warning for a file imported untimed and ok for a
    capture shorter than SHORT_CAPTURE_S (no use to TDoA whatever its timing)."""
    frames = len(timestamps)
    # the stream's first frame carries no time by design (rx_sound.cpp: gps_init): not a rejection
    zeros = sum(1 for s in timestamps if (s.gps_seconds, s.gps_nanoseconds) == (0, 0) and s.sample_index > 0)
    if model is None:
        fresh = sum(1 for s in timestamps if is_fresh(s))
        stale = 1.0 - fresh / frames if frames else 1.0
        short = n_samples / sample_rate_hz < SHORT_CAPTURE_S
        reason = ("imported untimed (recorded without GNSS): metrics only" if imported_untimed
                  else f"untimed: {untimed_reason}")
        severity = "warn" if imported_untimed else "ok" if short else "error"
        return GnssQuality(frames=frames, fresh_fixes=fresh, stale_frame_fraction=stale, zero_timestamps=zeros,
                           jumped_timestamps=0, outlier_fixes=0, longest_fix_gap_s=None, timing_rms_ns=None,
                           rate_spread_ppm=None, severity=severity, problems=() if severity == "ok" else (reason,),
                           untimed_reason=reason)
    jumps = _jumps(timestamps, model)
    all_frames = model.fresh_fixes + model.stale_or_missing_frames
    stale = model.stale_or_missing_frames / all_frames if all_frames else 0.0
    spread_ppm = model.sample_rate_spread_hz / model.sample_rate_hz * 1e6
    outliers = max(model.rejected_fixes - jumps, 0)
    claimed = sum(1 for s in timestamps if s.has_solution)
    errors, warnings = [], []

    def grade(value: float, warn: float, error: float, text: str) -> None:
        if value > error:
            errors.append(f"{text} (error above {error:g})")
        elif value > warn:
            warnings.append(f"{text} (warn above {warn:g})")

    grade(model.max_fix_gap_s, WARN_FIX_GAP_S, ERROR_FIX_GAP_S, f"longest gap between fixes {model.max_fix_gap_s:.1f} s")
    grade(model.timing_rms_ns, WARN_TIMING_RMS_NS, ERROR_TIMING_RMS_NS, f"timing rms {model.timing_rms_ns:.0f} ns")
    grade(spread_ppm, WARN_RATE_SPREAD_PPM, ERROR_RATE_SPREAD_PPM, f"sample-rate spread {spread_ppm:.3f} ppm")
    rejected = zeros + jumps + outliers
    if claimed and (jumps + outliers) / claimed > ERROR_REJECTED_FRACTION:
        errors.append(f"{jumps + outliers} of {claimed} timestamps rejected (error above "
                      f"{ERROR_REJECTED_FRACTION:.0%})")
    elif rejected:
        warnings.append(f"{rejected} timestamps rejected ({zeros} all-zero, {jumps} jumps of hours, "
                        f"{outliers} outliers)")
    if stale > WARN_STALE_FRACTION:
        warnings.append(f"stale-frame fraction {stale:.0%} (warn above {WARN_STALE_FRACTION:.0%})")
    return GnssQuality(frames=frames, fresh_fixes=model.fresh_fixes, stale_frame_fraction=stale, zero_timestamps=zeros,
                       jumped_timestamps=jumps, outlier_fixes=outliers, longest_fix_gap_s=model.max_fix_gap_s,
                       timing_rms_ns=model.timing_rms_ns, rate_spread_ppm=spread_ppm,
                       severity="error" if errors else "warn" if warnings else "ok", problems=tuple(errors + warnings))
