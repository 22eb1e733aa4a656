"""Receivers: what a receiver is, how it is validated, and the default European network.

A noun: no source kind, no database, no Dagster. The registry table (db/models.py) stores exactly
these fields; `validation.validate_receiver` is the one place a receiver is checked before it is
stored or used, with what depends on its kind (URL schemes, default frequency range) from the
kind's source in sources/registry.py.
"""

from __future__ import annotations

import dataclasses
import re


# A receiver id becomes a Dagster partition key and part of an S3 key (websdr_{id}.npy).
RECEIVER_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


def has_control_characters(text: str) -> bool:
    """C0/C1 control characters (ESC, newline, DEL, ...): never part of a name or URL."""
    return any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in text)


class InvalidReceiverError(ValueError):
    """A receiver definition is refused; the message names the field."""

    def __init__(self, field: str, problem: str):
        self.field = field
        super().__init__(f"receiver field '{field}': {problem}")


@dataclasses.dataclass(frozen=True)
class Receiver:
    id: str
    name: str
    url: str
    kind: str
    location_name: str
    latitude: float
    longitude: float
    altitude_m: float = 0.0
    is_active: bool = True
    # a capture attempt's time limit; a live source's attempt also gets its wait for the session's
    # start instant and the recording itself (sources/dispatch.attempt_time_limit)
    timeout_seconds: float = 30.0
    retry_count: int = 3
    max_channels: int = 4
    min_frequency_hz: float = 0.0
    max_frequency_hz: float | None = None


def _sim(rid: str, name: str, place: str, lat: float, lon: float, alt: float) -> Receiver:
    return Receiver(id=rid, name=name, url=f"sim://{rid}", kind="simulated", location_name=place,
                    latitude=lat, longitude=lon, altitude_m=alt)


# The seven default European receivers. They are seeded as simulated receivers so the pipeline
# runs offline with known ground truth; point one at a real KiwiSDR with `heimdall receivers edit`.
DEFAULT_RECEIVERS: tuple[Receiver, ...] = (
    _sim("f5len", "F5LEN", "Toulouse", 43.5, 1.4, 150.0),
    _sim("ph0m", "PH0M", "Pachmarke", 52.5, 4.8, 5.0),
    _sim("g0mjw", "G0MJW", "Bridgnorth", 52.5, -2.4, 80.0),
    _sim("hb9q", "HB9Q", "Zurich", 47.3, 8.5, 410.0),
    _sim("dk0ghz", "DK0GHZ", "Black Forest", 48.8, 8.2, 900.0),
    _sim("oe3xec", "OE3XEC", "Vienna", 48.2, 16.3, 190.0),
    _sim("hb9sl", "HB9SL", "St. Gallen", 47.4, 9.1, 670.0),
)
