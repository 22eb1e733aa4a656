"""Sessions: the one `Session` type, its one validation function, and key slugs.

Pure code: no Dagster, no database. `validate_session_request` is THE validation used by the CLI,
the Dagster launchpad job and the schedule; nothing else should construct a Session from user
input. db/sessions_repo.py maps a Session to and from its `sessions` row; what each receiver's
source accepts comes from sources/registry.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
import re
import secrets
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.propagation import PropagationModel, haversine_km, path_loss_db, thermal_noise_power_dbm
from heimdall_pipeline.sources.simulator import MODULATIONS
from heimdall_pipeline.storage.layout import InvalidKeyError, validate_key_part
from heimdall_pipeline.text import shown

if TYPE_CHECKING:
    from heimdall_pipeline.sources.base import Source

# "auto": each receiver is recorded by the source of its own kind; any other value names a kind
AUTO_SOURCE = "auto"
DEFAULT_SAMPLE_RATE_HZ = 12000.0
SESSION_KEY_PREFIX_PATTERN = re.compile(r"[a-z][a-z0-9]{0,15}")

# Transmitter dict (simulated sessions). Keys mirror simulator.Transmitter; the transmitter
# frequency is center_frequency_hz + offset_hz.
TRANSMITTER_KEYS = ("latitude", "longitude", "altitude_m", "eirp_dbm", "modulation", "offset_hz", "shadowing_sigma_db")
_TRANSMITTER_ALIASES = {"lat": "latitude", "lon": "longitude", "lng": "longitude", "alt": "altitude_m"}
DEFAULT_MODULATION = "carrier"
EIRP_RANGE_DBM = (-30.0, 90.0)
# The default EIRP aims at the simulator's noise: kTB plus a typical receiver noise figure (the
# simulator gives each receiver 6-12 dB).
TYPICAL_NOISE_FIGURE_DB = 9.0
DEFAULT_TARGET_SNR_DB = 10.0
DEFAULT_MARGIN_DB = 6.0


class InvalidSessionRequestError(ValueError):
    """A session request is refused; `.field` names the offending field, as does the message."""

    def __init__(self, field: str, problem: str):
        self.field = field
        super().__init__(f"session request field '{field}': {problem}")


@dataclasses.dataclass(frozen=True)
class SessionLimits:
    max_duration_s: float = 600.0
    min_sample_rate_hz: float = 1_000.0
    max_sample_rate_hz: float = 2_400_000.0
    # each capture is held in memory as complex64: 2**25 samples = 256 MiB per receiver
    max_samples_per_receiver: int = 2**25
    max_requested_by_length: int = 200


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclasses.dataclass(frozen=True)
class Session:
    """One recording session: what was requested, its key, and where it is in its lifecycle.

    The request fields (REQUEST_FIELDS) come from `validate_session_request`; the lifecycle fields
    (id, status and the time stamps) are set by the database (db/sessions_repo.py), whose
    `sessions` columns have the same names.
    """

    session_key: str
    center_frequency_hz: float
    duration_s: float
    sample_rate_hz: float = DEFAULT_SAMPLE_RATE_HZ
    receiver_ids: tuple[str, ...] = ()  # empty = all active receivers (resolved when stored)
    source_kind: str = AUTO_SOURCE  # "auto" (each receiver by its kind) or a registered kind
    requested_by: str = "unknown"
    scheduled_for: datetime = dataclasses.field(default_factory=_utc_now)
    transmitter: dict[str, Any] | None = None  # sources that take one only, keys TRANSMITTER_KEYS
    # "recording" sessions only: {"batch": upload batch, "files": {receiver id: WAV file name}};
    # the files are the objects incoming/<batch>/<file>, moved to imported/<batch>/ once stored
    recordings: dict[str, Any] | None = None
    status: str = "requested"  # requested -> launched -> succeeded | failed -> archived
    id: int | None = None
    requested_at: datetime | None = None
    launched_at: datetime | None = None
    run_id: str | None = None
    archived_at: datetime | None = None
    archived_from_status: str | None = None  # what mark_restored puts back
    status_reason: str | None = None  # why it has its status (e.g. a failure's cause)

    @property
    def expected_sample_count(self) -> int:
        return int(round(self.duration_s * self.sample_rate_hz))

    def source_kind_for(self, receiver: Receiver) -> str:
        """The kind of source that records `receiver`: its own under "auto", else source_kind."""
        return receiver.kind if self.source_kind in (AUTO_SOURCE, "", None) else self.source_kind

    def source_for(self, receiver: Receiver) -> "Source":
        from heimdall_pipeline.sources.registry import get_source

        return get_source(self.source_kind_for(receiver))

    def to_dict(self) -> dict[str, Any]:
        """The request, JSON-serialisable; `validate_session_request(**d, receivers=...)` accepts it back."""
        d = {name: getattr(self, name) for name in REQUEST_FIELDS}
        d["receiver_ids"] = list(self.receiver_ids)
        d["scheduled_for"] = self.scheduled_for.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
        return d


# What a user asks for; the other fields of Session are its lifecycle.
REQUEST_FIELDS = ("session_key", "center_frequency_hz", "duration_s", "sample_rate_hz", "receiver_ids",
                  "source_kind", "requested_by", "scheduled_for", "transmitter", "recordings")


def new_session_key(now: datetime | None = None, prefix: str = "s", *, rng: random.Random | None = None) -> str:
    """A slug like 's20261123t1326z-7f3a9c': prefix, UTC minute, 6 random hex digits.

    Lowercase a-z/0-9/'t'/'z'/'-' only, so always a valid key part; sorts by time to the minute.
    rng: only for reproducible tests; by default the suffix comes from `secrets`.
    """
    if not isinstance(prefix, str) or not SESSION_KEY_PREFIX_PATTERN.fullmatch(prefix):
        raise ValueError(f"session key prefix {prefix!r} must be 1-16 characters a-z/0-9 starting with a letter")
    if now is None:
        now = _utc_now()
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now {now!r} is naive; pass a timezone-aware datetime")
    stamp = now.astimezone(timezone.utc).strftime("%Y%m%dt%H%Mz")
    suffix = f"{rng.getrandbits(24):06x}" if rng is not None else secrets.token_hex(3)
    return validate_key_part(f"{prefix}{stamp}-{suffix}", field="session_key")


# ----------------------------------------------------------------------------- parsing helpers


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or value is None:
        raise InvalidSessionRequestError(field, f"{value!r} is not a number")
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise InvalidSessionRequestError(field, f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise InvalidSessionRequestError(field, f"{value!r} is not a finite number")
    return number


def _receiver_ids(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")] if value.strip(" ,") else []
        if not items:  # a given list that names nobody is a mistake, not "every active receiver"
            raise InvalidSessionRequestError("receiver_ids", f"{shown(value)} names no receiver id")
        if "" in items:  # "a,,b": a name left out is a typo to point at, not one to drop silently
            raise InvalidSessionRequestError("receiver_ids", f"{shown(value)} has an empty receiver id at position "
                                                             f"{items.index('') + 1}")
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise InvalidSessionRequestError("receiver_ids", f"{shown(value)} must be a list of receiver ids")
    seen: list[str] = []
    for item in items:
        try:
            validate_key_part(item, field="receiver_id")
        except InvalidKeyError as exc:
            raise InvalidSessionRequestError("receiver_ids", str(exc)) from None
        if item in seen:
            raise InvalidSessionRequestError("receiver_ids", f"receiver {shown(item)} is listed twice")
        seen.append(item)
    return tuple(seen)


def _scheduled_for(value: Any, now: datetime | None) -> datetime:
    if value is None or value == "":
        value = now if now is not None else _utc_now()
    if isinstance(value, str):
        text = value.strip()
        try:
            value = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "zZ" and text else text)
        except ValueError:
            raise InvalidSessionRequestError("scheduled_for", f"{text!r} is not an ISO-8601 date-time") from None
    if not isinstance(value, datetime):
        raise InvalidSessionRequestError("scheduled_for", f"{value!r} is not a date-time")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidSessionRequestError(
            "scheduled_for", f"{value.isoformat()} has no time zone; give UTC explicitly (e.g. a trailing 'Z')"
        )
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise InvalidSessionRequestError("scheduled_for", f"{value.isoformat()} is outside the supported "
                                                          "date range in UTC") from None


def _requested_by(value: Any, limits: SessionLimits) -> str:
    if value is None:
        return "unknown"
    if not isinstance(value, str):
        raise InvalidSessionRequestError("requested_by", f"{value!r} must be a string")
    value = value.strip()
    if not value:
        return "unknown"
    if len(value) > limits.max_requested_by_length:
        raise InvalidSessionRequestError(
            "requested_by", f"is {len(value)} characters long; the limit is {limits.max_requested_by_length}"
        )
    if any(not ch.isprintable() for ch in value):
        raise InvalidSessionRequestError("requested_by", "contains control characters")
    return value


# ----------------------------------------------------------------------------- transmitter


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


def _transmitter(value: Any, default: dict[str, Any], sample_rate_hz: float) -> dict[str, Any]:
    """User fields (aliases lat/lon accepted) over the deterministic default, then checked."""
    if value is None:
        given: Mapping[str, Any] = {}
    elif isinstance(value, Mapping):
        given = value
    else:
        raise InvalidSessionRequestError("transmitter", f"{value!r} must be a mapping of {', '.join(TRANSMITTER_KEYS)}")
    merged = dict(default)
    for key, item in given.items():
        name = _TRANSMITTER_ALIASES.get(key, key)
        if name not in TRANSMITTER_KEYS:
            raise InvalidSessionRequestError("transmitter", f"unknown key {key!r} (known: {', '.join(TRANSMITTER_KEYS)})")
        merged[name] = item
    out: dict[str, Any] = {}
    for name, low, high in (
        ("latitude", -90.0, 90.0),
        ("longitude", -180.0, 180.0),
        ("altitude_m", -500.0, 10_000.0),
        ("eirp_dbm", *EIRP_RANGE_DBM),
        ("shadowing_sigma_db", 0.0, 20.0),
    ):
        number = _number(merged[name], "transmitter")
        if not low <= number <= high:
            raise InvalidSessionRequestError("transmitter", f"{name} {number} is outside {low:g}..{high:g}")
        out[name] = number
    offset = _number(merged["offset_hz"], "transmitter")
    if abs(offset) >= 0.45 * sample_rate_hz:
        raise InvalidSessionRequestError(
            "transmitter", f"offset_hz {offset} is outside the +/-{0.45 * sample_rate_hz:g} Hz passband of the session"
        )
    out["offset_hz"] = offset
    modulation = merged["modulation"]
    if modulation not in MODULATIONS:
        raise InvalidSessionRequestError("transmitter", f"modulation {modulation!r} is not one of {', '.join(MODULATIONS)}")
    out["modulation"] = modulation
    return out


def _recordings(value: Any, source_kind: str) -> dict[str, Any] | None:
    """The recording files of a `recording` session (and of no other): a batch and one file per
    receiver, and whether files without GNSS time were accepted (``untimed``)."""
    if source_kind != "recording":
        if value:
            raise InvalidSessionRequestError("recordings", "only recording sessions name recording files")
        return None
    if not isinstance(value, Mapping) or not isinstance(value.get("files"), Mapping) or not value["files"]:
        raise InvalidSessionRequestError("recordings", "a recording session needs {'batch': ..., 'files': {receiver: file}}")
    try:
        batch = validate_key_part(value.get("batch"), field="recordings")
    except InvalidKeyError as exc:
        raise InvalidSessionRequestError("recordings", str(exc)) from None
    files = {}
    for receiver_id, file_name in value["files"].items():
        if not isinstance(file_name, str) or not file_name or "/" in file_name or "\\" in file_name:
            raise InvalidSessionRequestError("recordings", f"file {file_name!r} of {receiver_id!r} must be a bare file name")
        files[str(receiver_id)] = file_name
    return {"batch": batch, "files": files, **({"untimed": True} if value.get("untimed") else {})}


def default_receivers(receivers: Sequence[Receiver], source_kind: str) -> list[Receiver]:
    """The receivers a session without a receiver list records: the active ones whose source
    records requested sessions (not those that only replay their own uploaded recordings)."""
    from heimdall_pipeline.sources.registry import SOURCES

    def records_requests(receiver: Receiver) -> bool:
        source = SOURCES.get(receiver.kind if source_kind in (AUTO_SOURCE, "", None) else source_kind)
        return source is None or source.records_requested_sessions  # unknown kinds are refused later

    return [r for r in receivers if r.is_active and records_requests(r)]


# ----------------------------------------------------------------------------- validation


def validate_session_request(
    *,
    center_frequency_hz: Any,
    duration_s: Any,
    sample_rate_hz: Any = DEFAULT_SAMPLE_RATE_HZ,
    receiver_ids: Any = (),
    source_kind: Any = AUTO_SOURCE,
    requested_by: Any = None,
    session_key: Any = None,
    scheduled_for: Any = None,
    transmitter: Any = None,
    recordings: Any = None,
    receivers: Sequence[Receiver],
    limits: SessionLimits = SessionLimits(),
    now: datetime | None = None,
) -> Session:
    """Checks raw user input (numbers or numeric strings, ids as list or "a,b" string) and returns
    a requested Session, or raises InvalidSessionRequestError whose `.field` names the bad field.

    receivers: the registry (all receivers, active or not). Each selected receiver's source (from
    sources/registry.py) checks what it can record. now: only for tests/schedules (the default
    scheduled_for and the time stamp of a generated session key).
    """
    from heimdall_pipeline.sources.registry import UnknownSourceKindError, source_kinds

    # source kind first: it decides which receivers and rates are acceptable
    if source_kind is None or source_kind == "":
        source_kind = AUTO_SOURCE
    kinds = (AUTO_SOURCE, *source_kinds())
    if source_kind not in kinds:
        raise InvalidSessionRequestError("source_kind", f"{source_kind!r} is not one of {', '.join(kinds)}")

    # frequency
    frequency = _number(center_frequency_hz, "center_frequency_hz")
    if frequency <= 0:
        raise InvalidSessionRequestError("center_frequency_hz", f"{frequency:g} Hz must be positive")

    # duration
    duration = _number(duration_s, "duration_s")
    if duration <= 0:
        raise InvalidSessionRequestError("duration_s", f"{duration:g} s must be positive")
    if duration > limits.max_duration_s:
        raise InvalidSessionRequestError("duration_s", f"{duration:g} s exceeds the limit of {limits.max_duration_s:g} s")

    # sample rate (global range; each source's own rules below)
    rate = _number(sample_rate_hz, "sample_rate_hz")
    if not limits.min_sample_rate_hz <= rate <= limits.max_sample_rate_hz:
        raise InvalidSessionRequestError(
            "sample_rate_hz",
            f"{rate:g} Hz is outside {limits.min_sample_rate_hz:g}..{limits.max_sample_rate_hz:g} Hz",
        )
    samples = int(round(duration * rate))
    if samples < 1:
        raise InvalidSessionRequestError("duration_s", f"{duration:g} s at {rate:g} Hz is less than one sample")
    if samples > limits.max_samples_per_receiver:
        raise InvalidSessionRequestError(
            "duration_s",
            f"{duration:g} s at sample_rate_hz {rate:g} is {samples} samples per receiver; the limit is "
            f"{limits.max_samples_per_receiver} (shorten the duration or lower the sample rate)",
        )

    # receivers
    ids = _receiver_ids(receiver_ids)
    by_id = {r.id: r for r in receivers}
    if ids:
        selected = []
        for rid in ids:
            if rid not in by_id:
                known = ", ".join(sorted(by_id)) or "none"
                raise InvalidSessionRequestError("receiver_ids", f"unknown receiver {shown(rid)} (known: {known})")
            if not by_id[rid].is_active:
                raise InvalidSessionRequestError("receiver_ids", f"receiver {shown(rid)} is inactive")
            selected.append(by_id[rid])
    else:
        selected = default_receivers(receivers, source_kind)
        if not selected:
            raise InvalidSessionRequestError("receiver_ids", "no active receivers (activate one or add one)")

    when = _scheduled_for(scheduled_for, now)
    # session key: user-given is validated, else generated from the scheduled time
    if session_key is None or session_key == "":
        key = new_session_key(when)
    else:
        try:
            key = validate_key_part(session_key, field="session_key")
        except InvalidKeyError as exc:
            raise InvalidSessionRequestError("session_key", str(exc)) from None
    session = Session(session_key=key, center_frequency_hz=frequency, duration_s=duration, sample_rate_hz=rate,
                      receiver_ids=ids, source_kind=source_kind, requested_by=_requested_by(requested_by, limits),
                      scheduled_for=when, recordings=_recordings(recordings, source_kind))

    # each receiver's source: the receiver's kind, its frequency range, the rates it delivers
    takes_transmitter = []
    for receiver in selected:
        try:
            source = session.source_for(receiver)
        except UnknownSourceKindError as exc:
            raise InvalidSessionRequestError("receiver_ids", f"receiver {receiver.id!r}: {exc}") from None
        source.validate_session(session, receiver)
        if source.takes_transmitter:
            takes_transmitter.append(receiver)

    # transmitter: needed (and only allowed) when a source computes the signal from one
    if takes_transmitter:
        tx = _transmitter(transmitter, default_transmitter(key, takes_transmitter, frequency, rate), rate)
    elif transmitter:
        raise InvalidSessionRequestError("transmitter", "only sessions with simulated receivers take a transmitter")
    else:
        tx = None
    return dataclasses.replace(session, transmitter=tx)
