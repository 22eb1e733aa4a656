"""Validation against the source kinds: a session request (`validate_session_request`, THE
validation used by the CLI, the Dagster launchpad job, the schedule and the recording import) and
a receiver definition (`validate_receiver`, before a receiver is stored or used).

What each receiver's kind accepts (URL schemes, frequency range, sample rates, a transmitter)
comes from its source in sources/registry.py; the nouns themselves (receivers.py, sessions.py)
know no kind. No Dagster, no database.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from heimdall_pipeline.receivers import RECEIVER_ID_PATTERN, InvalidReceiverError, Receiver, has_control_characters
from heimdall_pipeline.sessions import (
    AUTO_SOURCE, DEFAULT_SAMPLE_RATE_HZ, InvalidSessionRequestError, Session, SessionLimits, new_session_key,
    utc_now,
)
from heimdall_pipeline.sources.registry import SOURCES, UnknownSourceKindError, get_source, source_for, source_kinds
from heimdall_pipeline.sources.simulator import MODULATIONS
from heimdall_pipeline.sources.transmitter import (
    TRANSMITTER_ALIASES, EIRP_RANGE_DBM, TRANSMITTER_KEYS, default_transmitter,
)
from heimdall_pipeline.storage.layout import InvalidKeyError, validate_key_part
from heimdall_pipeline.text import shown

# ----------------------------------------------------------------------------- receivers


def validate_receiver(receiver: Receiver) -> Receiver:
    """Returns the receiver if every field is acceptable for its kind, else raises
    InvalidReceiverError naming the field."""
    if not isinstance(receiver.id, str) or not RECEIVER_ID_PATTERN.fullmatch(receiver.id):
        raise InvalidReceiverError(
            "id", f"{shown(receiver.id)} must be 1-40 characters of a-z, 0-9, '_' or '-', starting with a letter or digit"
        )
    if not receiver.name or len(receiver.name) > 200:
        raise InvalidReceiverError("name", "must be 1-200 characters")
    for field in ("name", "location_name", "url"):
        if has_control_characters(getattr(receiver, field) or ""):
            # ESC, newline and the like would rewrite a terminal that lists the registry
            raise InvalidReceiverError(field, f"{shown(getattr(receiver, field))} contains control characters")
    try:
        source = get_source(receiver.kind)
    except UnknownSourceKindError as exc:
        raise InvalidReceiverError("kind", str(exc)) from None
    source.validate_receiver(receiver)
    if not -90.0 <= float(receiver.latitude) <= 90.0:
        raise InvalidReceiverError("latitude", f"{receiver.latitude} is outside -90..90 degrees")
    if not -180.0 <= float(receiver.longitude) <= 180.0:
        raise InvalidReceiverError("longitude", f"{receiver.longitude} is outside -180..180 degrees")
    if not -500.0 <= float(receiver.altitude_m) <= 10000.0:
        raise InvalidReceiverError("altitude_m", f"{receiver.altitude_m} is outside -500..10000 m")
    if not float(receiver.timeout_seconds) > 0:
        raise InvalidReceiverError("timeout_seconds", f"{receiver.timeout_seconds} must be positive")
    if int(receiver.retry_count) < 0 or int(receiver.retry_count) > 10:
        raise InvalidReceiverError("retry_count", f"{receiver.retry_count} must be 0..10")
    if int(receiver.max_channels) < 1:
        raise InvalidReceiverError("max_channels", f"{receiver.max_channels} must be at least 1")
    low, high = source.frequency_range_hz(receiver)
    if not 0 <= low < high:
        raise InvalidReceiverError("max_frequency_hz", f"range {low}..{high} Hz is empty or negative")
    return receiver

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
        value = now if now is not None else utc_now()
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
        name = TRANSMITTER_ALIASES.get(key, key)
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
    def records_requests(receiver: Receiver) -> bool:
        source = SOURCES.get(receiver.kind if source_kind in (AUTO_SOURCE, "", None) else source_kind)
        return source is None or source.records_requested_sessions  # unknown kinds are refused later

    return [r for r in receivers if r.is_active and records_requests(r)]


# ----------------------------------------------------------------------------- sessions


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
            source = source_for(session, receiver)
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
