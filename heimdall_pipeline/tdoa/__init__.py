"""Time-difference-of-arrival localization (pure: no Dagster, no storage).

align: captures on GNSS time, resampled to one time base; correlate: the signal's band and each
pair's lag; solve: the position on the sphere with its 95 % region; localize: the whole chain for
one session; accuracy: figures against a known truth (real reference recordings, simulations).
"""

from heimdall_pipeline.tdoa.align import AlignedCaptures, TimedCapture, align, timed_capture
from heimdall_pipeline.tdoa.localize import TdoaResult, localize_tdoa

__all__ = ["AlignedCaptures", "TdoaResult", "TimedCapture", "align", "localize_tdoa", "timed_capture"]
