"""Which source records a receiver for a session, and the rule that live sources cannot
re-record the past. Pure: no Dagster, no storage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.sources.acquisition import AcquisitionError, CaptureOne
from heimdall_pipeline.sources.capture import Capture
from heimdall_pipeline.sources.kiwisdr import capture_iq
from heimdall_pipeline.sources.simulator import PropagationModel, Transmitter, simulate_capture

# A live capture may start a little before its scheduled time and finish a while after
# (queueing, retries); outside that window the moment is gone.
LIVE_WINDOW_GRACE = timedelta(minutes=15)


@dataclass(frozen=True)
class SessionPlan:
    """What a source needs to know about a session (a SessionRequest or a stored session)."""

    session_key: str
    center_frequency_hz: float
    duration_s: float
    sample_rate_hz: float
    scheduled_for: datetime
    source_kind: str = "auto"
    transmitter: dict[str, Any] | None = None


class LiveWindowClosedError(AcquisitionError):
    """A live receiver was asked to record a session whose time has passed."""

    transient = False


def source_kind_for(plan: SessionPlan, receiver: Receiver) -> str:
    return receiver.kind if plan.source_kind in ("auto", "", None) else plan.source_kind


def transmitter_for(plan: SessionPlan) -> Transmitter:
    spec = dict(plan.transmitter or {})
    if not spec:
        raise ValueError(f"session {plan.session_key} has no transmitter: simulated sessions need one")
    return Transmitter(
        frequency_hz=plan.center_frequency_hz + float(spec.get("offset_hz", 0.0)),
        eirp_dbm=float(spec["eirp_dbm"]),
        latitude=float(spec["latitude"]),
        longitude=float(spec["longitude"]),
        altitude_m=float(spec.get("altitude_m", 0.0)),
        modulation=spec.get("modulation", "carrier"),
    )


def check_live_window(plan: SessionPlan, receiver: Receiver, now: datetime | None = None) -> None:
    now = now or datetime.now(timezone.utc)
    opens = plan.scheduled_for - LIVE_WINDOW_GRACE
    closes = plan.scheduled_for + timedelta(seconds=plan.duration_s) + LIVE_WINDOW_GRACE
    if not opens <= now <= closes:
        raise LiveWindowClosedError(
            receiver.id,
            f"is a live KiwiSDR and session {plan.session_key} was scheduled for "
            f"{plan.scheduled_for.isoformat()}; it cannot re-record outside {opens.isoformat()}.."
            f"{closes.isoformat()}. To recompute results, backfill receiver_metrics (it reads the stored IQ).",
        )


def propagation_for(plan: SessionPlan) -> PropagationModel:
    return PropagationModel(shadowing_sigma_db=float((plan.transmitter or {}).get("shadowing_sigma_db", 0.0)))


def capture_function(plan: SessionPlan, *, kiwisdr_password: str = "") -> CaptureOne:
    """The `capture_one(receiver, attempt)` coroutine for the acquisition policy."""
    propagation = propagation_for(plan)

    async def capture_one(receiver: Receiver, attempt: int) -> Capture:
        kind = source_kind_for(plan, receiver)
        if kind == "simulated":
            # Deterministic for (session, receiver): recomputing gives the same samples.
            return simulate_capture(plan.session_key, receiver, transmitter_for(plan), plan.center_frequency_hz,
                                    plan.sample_rate_hz, plan.duration_s, plan.scheduled_for, propagation)
        if kind == "kiwisdr":
            check_live_window(plan, receiver)
            return await capture_iq(receiver, session_key=plan.session_key,
                                    center_frequency_hz=plan.center_frequency_hz, duration_s=plan.duration_s,
                                    start_time=plan.scheduled_for, password=kiwisdr_password)
        raise ValueError(f"unknown source kind {kind!r} for receiver {receiver.id}")

    return capture_one
