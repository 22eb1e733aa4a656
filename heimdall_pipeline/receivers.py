"""Receivers: what a receiver is, how it is validated, and the default European network.

Pure domain code: no Dagster, no database. The registry table (db/models.py) stores exactly these
fields; `Receiver.validated()` is the one place a row is checked before it is stored or used. What
depends on the kind (its URL schemes, its default frequency range) comes from the kind's source
in sources/registry.py.
"""

from __future__ import annotations

import dataclasses
import re

from heimdall_pipeline.text import shown

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

    @property
    def frequency_range_hz(self) -> tuple[float, float]:
        """Its own range, the top defaulting to what its kind's source can tune."""
        return _registry().get_source(self.kind).frequency_range_hz(self)

    def can_tune(self, frequency_hz: float) -> bool:
        low, high = self.frequency_range_hz
        return low <= frequency_hz <= high

    def validated(self) -> "Receiver":
        """Returns self if every field is acceptable, else raises InvalidReceiverError."""
        if not isinstance(self.id, str) or not RECEIVER_ID_PATTERN.fullmatch(self.id):
            raise InvalidReceiverError(
                "id", f"{shown(self.id)} must be 1-40 characters of a-z, 0-9, '_' or '-', starting with a letter or digit"
            )
        if not self.name or len(self.name) > 200:
            raise InvalidReceiverError("name", "must be 1-200 characters")
        for field in ("name", "location_name", "url"):
            if has_control_characters(getattr(self, field) or ""):
                # ESC, newline and the like would rewrite a terminal that lists the registry
                raise InvalidReceiverError(field, f"{shown(getattr(self, field))} contains control characters")
        registry = _registry()
        try:
            source = registry.get_source(self.kind)
        except registry.UnknownSourceKindError as exc:
            raise InvalidReceiverError("kind", str(exc)) from None
        source.validate_receiver(self)
        if not -90.0 <= float(self.latitude) <= 90.0:
            raise InvalidReceiverError("latitude", f"{self.latitude} is outside -90..90 degrees")
        if not -180.0 <= float(self.longitude) <= 180.0:
            raise InvalidReceiverError("longitude", f"{self.longitude} is outside -180..180 degrees")
        if not -500.0 <= float(self.altitude_m) <= 10000.0:
            raise InvalidReceiverError("altitude_m", f"{self.altitude_m} is outside -500..10000 m")
        if not float(self.timeout_seconds) > 0:
            raise InvalidReceiverError("timeout_seconds", f"{self.timeout_seconds} must be positive")
        if int(self.retry_count) < 0 or int(self.retry_count) > 10:
            raise InvalidReceiverError("retry_count", f"{self.retry_count} must be 0..10")
        if int(self.max_channels) < 1:
            raise InvalidReceiverError("max_channels", f"{self.max_channels} must be at least 1")
        low, high = self.frequency_range_hz
        if not 0 <= low < high:
            raise InvalidReceiverError("max_frequency_hz", f"range {low}..{high} Hz is empty or negative")
        return self


def _registry():
    # imported when used: every source module imports Receiver from here
    from heimdall_pipeline.sources import registry

    return registry


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
