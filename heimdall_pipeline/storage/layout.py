"""S3 object key layout and the validation of every part that goes into a key.

Pure code. A key part (session key, receiver id) also becomes a Dagster partition key, where '|'
separates the dimensions of a multi-partition key and ',' '[' ']' have meaning in partition ranges
and selections; in S3 '/' is a path separator and '..' a traversal. The rule below admits only
lowercase ASCII letters, digits, '_' and '-', starting with a letter or digit, so none of those can
appear. Every builder validates its parts before building, so no unsafe key can be produced.

Layout:
    sessions/{session}/websdr_{receiver}.npy
    sessions/{session}/websdr_{receiver}_metadata.json
    sessions/{session}/websdr_{receiver}_spectrum.png
"""

from __future__ import annotations

import re

from heimdall_pipeline.text import shown

KEY_PART_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]*")
MAX_SESSION_KEY_LENGTH = 64
MAX_RECEIVER_ID_LENGTH = 40  # same as receivers.RECEIVER_ID_PATTERN
MAX_KEY_PART_LENGTH = 64
_MAX_LENGTHS = {"session_key": MAX_SESSION_KEY_LENGTH, "receiver_id": MAX_RECEIVER_ID_LENGTH}

SESSIONS_ROOT = "sessions"
OBJECT_PREFIX = "websdr_"
KIND_SUFFIXES = {  # kind -> file-name suffix after the receiver id
    "iq": ".npy",
    "metadata": "_metadata.json",
    "spectrum": "_spectrum.png",
}


class InvalidKeyError(ValueError):
    """A key part or object key is refused; the message names the field and the problem."""

    def __init__(self, field: str, problem: str):
        self.field = field
        super().__init__(f"{field}: {problem}")


def validate_key_part(value: object, *, field: str) -> str:
    """Returns value if it is a safe key part, else raises InvalidKeyError naming `field`.

    Limits: session_key <= 64 characters, receiver_id <= 40, any other field <= 64.
    """
    max_length = _MAX_LENGTHS.get(field, MAX_KEY_PART_LENGTH)
    if not isinstance(value, str):
        raise InvalidKeyError(field, f"must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidKeyError(field, "must not be empty")
    if len(value) > max_length:
        raise InvalidKeyError(field, f"is {len(value)} characters long; the limit is {max_length}")
    if not KEY_PART_PATTERN.fullmatch(value):
        bad = sorted({c for c in value if not re.fullmatch(r"[a-z0-9_-]", c)})
        if bad:
            forbidden = ", ".join(repr(c) for c in bad[:8])
            problem = f"{shown(value)} contains forbidden characters {forbidden}"
        else:
            problem = f"{shown(value)} must start with a lowercase letter or digit"
        raise InvalidKeyError(field, problem + " (allowed: a-z, 0-9, '_' and '-', starting with a-z or 0-9)")
    return value


def session_prefix(session_key: str) -> str:
    """'sessions/{session}/' — every object of a session is under this prefix."""
    return f"{SESSIONS_ROOT}/{validate_key_part(session_key, field='session_key')}/"


def _object_key(session_key: str, receiver_id: str, kind: str) -> str:
    prefix = session_prefix(session_key)
    receiver_id = validate_key_part(receiver_id, field="receiver_id")
    return f"{prefix}{OBJECT_PREFIX}{receiver_id}{KIND_SUFFIXES[kind]}"


def iq_object_key(session_key: str, receiver_id: str) -> str:
    return _object_key(session_key, receiver_id, "iq")


def metadata_object_key(session_key: str, receiver_id: str) -> str:
    return _object_key(session_key, receiver_id, "metadata")


def spectrum_object_key(session_key: str, receiver_id: str) -> str:
    return _object_key(session_key, receiver_id, "spectrum")


def localization_object_key(session_key: str) -> str:
    """'sessions/{session}/localization.png': the session's localization map."""
    return session_prefix(session_key) + "localization.png"


# Uploaded recordings: 'incoming/{batch}/{file}' until their captures are stored and verified,
# then 'imported/{batch}/{file}' (heimdall_pipeline/recordings/).
INCOMING_ROOT = "incoming"
IMPORTED_ROOT = "imported"


def upload_prefix(root: str, batch: str) -> str:
    """'incoming/{batch}/' or 'imported/{batch}/'."""
    if root not in (INCOMING_ROOT, IMPORTED_ROOT):
        raise ValueError(f"upload root {root!r} is not {INCOMING_ROOT!r} or {IMPORTED_ROOT!r}")
    return f"{root}/{validate_key_part(batch, field='batch')}/"


def upload_key(root: str, batch: str, file_name: str) -> str:
    if not file_name or "/" in file_name or "\\" in file_name:
        raise InvalidKeyError("file_name", f"{file_name!r} must be a bare file name")
    return upload_prefix(root, batch) + file_name


def iq_dataset_name(receiver_id: str) -> str:
    """File name of the .npy object (the SigMF core:dataset value), e.g. 'websdr_f5len.npy'."""
    return f"{OBJECT_PREFIX}{validate_key_part(receiver_id, field='receiver_id')}{KIND_SUFFIXES['iq']}"


def parse_object_key(key: str) -> tuple[str, str, str]:
    """Inverse of the builders: returns (session_key, receiver_id, kind), kind in 'iq'|'metadata'|'spectrum'.

    Raises InvalidKeyError (field 'key') for anything the builders could not have produced.
    """
    if not isinstance(key, str):
        raise InvalidKeyError("key", f"must be a string, got {type(key).__name__}")
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != SESSIONS_ROOT:
        raise InvalidKeyError("key", f"{key!r} is not of the form {SESSIONS_ROOT}/{{session}}/{OBJECT_PREFIX}{{receiver}}...")
    _, session_key, name = parts
    if not name.startswith(OBJECT_PREFIX):
        raise InvalidKeyError("key", f"{key!r}: object name does not start with {OBJECT_PREFIX!r}")
    stem = name[len(OBJECT_PREFIX):]
    # longest suffix first: '_metadata.json' and '_spectrum.png' before '.npy'
    for kind, suffix in sorted(KIND_SUFFIXES.items(), key=lambda kv: -len(kv[1])):
        if stem.endswith(suffix):
            receiver_id = stem[: -len(suffix)]
            break
    else:
        raise InvalidKeyError("key", f"{key!r}: unknown object kind (expected one of {', '.join(KIND_SUFFIXES.values())})")
    try:
        validate_key_part(session_key, field="session_key")
        validate_key_part(receiver_id, field="receiver_id")
    except InvalidKeyError as exc:
        raise InvalidKeyError("key", f"{key!r}: {exc}") from exc
    rebuilt = _object_key(session_key, receiver_id, kind)
    if rebuilt != key:  # pragma: no cover - defensive; parsing is exact by construction
        raise InvalidKeyError("key", f"{key!r} does not round-trip (rebuilt {rebuilt!r})")
    return session_key, receiver_id, kind
