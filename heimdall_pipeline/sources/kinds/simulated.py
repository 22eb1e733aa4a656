"""The `simulated` kind: a receiver computed by the simulator, with known ground truth."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.sources.base import Source
from heimdall_pipeline.sources.capture import Capture
from heimdall_pipeline.sources.simulator import PropagationModel, Transmitter, simulate_capture

if TYPE_CHECKING:
    from heimdall_pipeline.sessions import Session


def transmitter_for(session: "Session") -> Transmitter:
    """The simulator's transmitter of a session (its transmitter frequency is the centre plus offset)."""
    spec = dict(session.transmitter or {})
    if not spec:
        raise ValueError(f"session {session.session_key} has no transmitter: simulated sessions need one")
    return Transmitter(
        frequency_hz=session.center_frequency_hz + float(spec.get("offset_hz", 0.0)),
        eirp_dbm=float(spec["eirp_dbm"]),
        latitude=float(spec["latitude"]),
        longitude=float(spec["longitude"]),
        altitude_m=float(spec.get("altitude_m", 0.0)),
        modulation=spec.get("modulation", "carrier"),
    )


def propagation_for(session: "Session") -> PropagationModel:
    return PropagationModel(shadowing_sigma_db=float((session.transmitter or {}).get("shadowing_sigma_db", 0.0)))


class SimulatedSource(Source):
    kind = "simulated"
    url_schemes = ("sim",)
    live = False
    default_max_frequency_hz = 6e9
    # it needs only a receiver's position, so it can stand in for a real receiver too
    records_any_receiver = True
    takes_transmitter = True

    async def capture(self, session: "Session", receiver: Receiver, *, password: str = "",
                      start_at: datetime | None = None) -> Capture:
        # Deterministic for (session, receiver): recomputing gives the same samples.
        return simulate_capture(session.session_key, receiver, transmitter_for(session), session.center_frequency_hz,
                                session.sample_rate_hz, session.duration_s, session.scheduled_for,
                                propagation_for(session))
