"""Each receiver's timing allowance: how far its GNSS time may be off, what the 95 % region assumes.

The model (docs/tdoa.md has the sources and the figures behind each term):

* systematic: a constant offset per receiver that no capture figure shows. For a KiwiSDR the time
  tag of a frame is the time of the last GNSS solution plus ADC ticks, minus a processing delay
  that was measured once per firmware mode (jks-prv/Beagle_SDR_GPS rx/rx_sound.cpp: ``gps_delay``
  "1st estimate of processing delay", the 3-channel mode's target "empirically measured using GPS
  1 PPS input", a FIXME on the 14-channel mode), and the signal reaches the ADC through the
  receiver's own antenna, cable, filters and, at LF/MF, a propagation path that is not the
  great circle. Real sets show pair lag errors of 4-9 us (the shared DCF77 set, 2020) and up to
  26 us (three other KiwiSDRs on DCF77, 2017). Modelled as uniform within +-KIWISDR_BIAS_BOUND_S:
  standard deviation bound / sqrt(3). Simulated receivers have none (the simulator adds none).
* interpolation: between two fresh fixes the time model is a straight line; the receiver clock's
  wander over the longest gap is not followed. Its size: the rate's spread between fix intervals
  (or, with too few intervals to measure it, the KiwiSDR's own +-1 ppm clock-correction window,
  dev/clk.cpp) times half the longest gap.
* tag noise: the fresh tags' rms around the model averaged over the fixes of a knot (dsp/timing.py).

The three are independent: the allowance is their root sum of squares. Pair lags then carry
``a_i - a_j`` of the receivers' offsets: the solver (solve.py) takes the full covariance, so pairs
that share a receiver share its offset.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from heimdall_pipeline.tdoa.align import TimedCapture

KIWISDR_BIAS_BOUND_S = 30e-6
KIWISDR_BIAS_SIGMA_S = KIWISDR_BIAS_BOUND_S / math.sqrt(3.0)  # uniform within +-bound
KIWISDR_CLOCK_WINDOW_PPM = 1.0  # Beagle_SDR_GPS dev/clk.cpp: corrections beyond +-1 ppm are outliers
REAL_RECEIVER_CLASS = "kiwisdr"
SIMULATED_CLASS = "simulated"
CLASS_BIAS_SIGMA_S = {REAL_RECEIVER_CLASS: KIWISDR_BIAS_SIGMA_S, SIMULATED_CLASS: 0.0}


@dataclasses.dataclass(frozen=True)
class TimingAllowance:
    """One receiver's timing allowance (1 sigma, seconds) and its parts."""

    receiver_id: str
    timing_class: str
    systematic_s: float
    interpolation_s: float
    tag_noise_s: float

    @property
    def sigma_s(self) -> float:
        return math.sqrt(self.systematic_s**2 + self.interpolation_s**2 + self.tag_noise_s**2)

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "sigma_s": self.sigma_s}


def timing_allowance(capture: TimedCapture, timing_class: str = REAL_RECEIVER_CLASS) -> TimingAllowance:
    """The allowance of one timed capture of a receiver of the given class."""
    m = capture.time_model
    if m is None:
        raise ValueError(f"{capture.receiver_id}: an untimed capture has no timing allowance")
    relative_spread = m.sample_rate_spread_hz / m.sample_rate_hz if len(m.knot_samples) >= 3 \
        else KIWISDR_CLOCK_WINDOW_PPM * 1e-6
    per_knot = max(1.0, m.fresh_fixes / max(1, len(m.knot_samples)))
    return TimingAllowance(
        receiver_id=capture.receiver_id, timing_class=timing_class,
        systematic_s=CLASS_BIAS_SIGMA_S[timing_class],
        interpolation_s=relative_spread * m.max_fix_gap_s / 2.0,
        tag_noise_s=m.timing_rms_ns * 1e-9 / math.sqrt(per_knot))


def assumption_text(allowances: list[TimingAllowance]) -> str:
    """What the 95 % region assumes about the receivers' timing, in one sentence for the UI."""
    classes = {a.timing_class for a in allowances}
    parts = []
    if REAL_RECEIVER_CLASS in classes:
        parts.append(f"each real receiver's GNSS time may be off by a constant within ±{KIWISDR_BIAS_BOUND_S * 1e6:.0f} µs "
                     f"(KiwiSDR class, σ {KIWISDR_BIAS_SIGMA_S * 1e6:.1f} µs)")
    if SIMULATED_CLASS in classes:
        parts.append("simulated receivers have no systematic offset")
    parts.append("plus each capture's own interpolation and tag noise "
                 f"(largest {max(math.hypot(a.interpolation_s, a.tag_noise_s) for a in allowances) * 1e6:.2f} µs); "
                 "docs/tdoa.md")
    return "; ".join(parts)
