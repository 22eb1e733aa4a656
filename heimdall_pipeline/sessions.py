"""Sessions: the one `Session` type, its request fields, its limits and key slugs.

A noun: no source kind, no database, no Dagster. `validation.validate_session_request` is the one
place a Session is made from user input (checked against each receiver's source);
db/sessions_repo.py maps a Session to and from its `sessions` row.
"""

from __future__ import annotations

import dataclasses
import random
import re
import secrets
from datetime import datetime, timezone
from typing import Any

from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.storage.layout import validate_key_part

# "auto": each receiver is recorded by the source of its own kind; any other value names a kind
AUTO_SOURCE = "auto"
DEFAULT_SAMPLE_RATE_HZ = 12000.0
SESSION_KEY_PREFIX_PATTERN = re.compile(r"[a-z][a-z0-9]{0,15}")


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


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclasses.dataclass(frozen=True)
class Session:
    """One recording session: what was requested, its key, and where it is in its lifecycle.

    The request fields (REQUEST_FIELDS) come from `validation.validate_session_request`; the lifecycle fields
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
    scheduled_for: datetime = dataclasses.field(default_factory=utc_now)
    transmitter: dict[str, Any] | None = None  # sources that take one only, keys sources/transmitter.TRANSMITTER_KEYS
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

    def to_dict(self) -> dict[str, Any]:
        """The request, JSON-serialisable; `validation.validate_session_request(**d, receivers=...)` accepts it back."""
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
        now = utc_now()
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now {now!r} is naive; pass a timezone-aware datetime")
    stamp = now.astimezone(timezone.utc).strftime("%Y%m%dt%H%Mz")
    suffix = f"{rng.getrandbits(24):06x}" if rng is not None else secrets.token_hex(3)
    return validate_key_part(f"{prefix}{stamp}-{suffix}", field="session_key")
