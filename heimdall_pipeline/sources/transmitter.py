"""The transmitter of a simulated session: the keys of its request dict and the deterministic
default (inside the receivers' hull, loud enough for most of them). `validation` checks a user's
dict; sources/kinds/simulated.py turns it into the simulator's `Transmitter`."""

from __future__ import annotations

import hashlib
import math
from typing import Any, Sequence

from heimdall_pipeline.propagation import PropagationModel, haversine_km, path_loss_db, thermal_noise_power_dbm
from heimdall_pipeline.receivers import Receiver

# Transmitter dict (simulated sessions). Keys mirror simulator.Transmitter; the transmitter
# frequency is center_frequency_hz + offset_hz.
TRANSMITTER_KEYS = ("latitude", "longitude", "altitude_m", "eirp_dbm", "modulation", "offset_hz", "shadowing_sigma_db")
TRANSMITTER_ALIASES = {"lat": "latitude", "lon": "longitude", "lng": "longitude", "alt": "altitude_m"}
DEFAULT_MODULATION = "carrier"
EIRP_RANGE_DBM = (-30.0, 90.0)
# The default EIRP aims at the simulator's noise: kTB plus a typical receiver noise figure (the
# simulator gives each receiver 6-12 dB).
TYPICAL_NOISE_FIGURE_DB = 9.0
DEFAULT_TARGET_SNR_DB = 10.0
DEFAULT_MARGIN_DB = 6.0


def assumed_noise_dbm(sample_rate_hz: float) -> float:
    """The simulator's thermal floor with a typical receiver noise figure."""
    return thermal_noise_power_dbm(sample_rate_hz, TYPICAL_NOISE_FIGURE_DB)


def default_transmitter(
    session_key: str,
    receivers: Sequence[Receiver],
    center_frequency_hz: float,
    sample_rate_hz: float,
    *,
    target_snr_db: float = DEFAULT_TARGET_SNR_DB,
) -> dict[str, Any]:
    """A deterministic transmitter derived from the session key.

    Position: a convex combination of the receivers' positions with weights from SHA-256 of the
    session key, so it always lies inside their convex hull. EIRP: enough for `target_snr_db`
    plus a 6 dB margin at the receiver at the 75th-percentile distance (so "most" receivers), with
    the simulator's default path loss and `assumed_noise_dbm`; each receiver's own noise figure
    decides its real SNR.
    Offset: 5-20 % of the sample rate away from DC, sign from the hash.
    """
    if not receivers:
        raise ValueError("a default transmitter needs at least one receiver")
    digest = hashlib.sha256(f"heimdall-transmitter:{session_key}".encode()).digest()
    weights = [1.0 + digest[i % len(digest)] / 255.0 * 3.0 for i in range(len(receivers))]
    total = sum(weights)
    latitude = sum(w * r.latitude for w, r in zip(weights, receivers)) / total
    longitude = sum(w * r.longitude for w, r in zip(weights, receivers)) / total
    distances = sorted(haversine_km(latitude, longitude, r.latitude, r.longitude) for r in receivers)
    index = max(0, math.ceil(0.75 * len(distances)) - 1)
    eirp = (
        assumed_noise_dbm(sample_rate_hz)
        + target_snr_db
        + DEFAULT_MARGIN_DB
        + path_loss_db(distances[index], center_frequency_hz, PropagationModel())
    )
    eirp = min(max(eirp, EIRP_RANGE_DBM[0]), EIRP_RANGE_DBM[1])
    fraction = 0.05 + 0.15 * int.from_bytes(digest[-4:-2], "big") / 65535.0
    sign = 1.0 if digest[-1] & 1 else -1.0
    return {
        "latitude": round(latitude, 6),
        "longitude": round(longitude, 6),
        "altitude_m": 10.0,
        "eirp_dbm": round(eirp, 1),
        "modulation": DEFAULT_MODULATION,
        "offset_hz": round(sign * fraction * sample_rate_hz, 1),
        # Log-normal shadowing per receiver (dB); 0 = the path-loss model exactly.
        "shadowing_sigma_db": 0.0,
    }
