"""SQLAlchemy engines for the metrics/registry database: one pooled engine per URL per process.

`make_engine(url)` accepts `postgresql://`, `postgres://` or `postgresql+psycopg://` URLs and always
uses the psycopg 3 driver. Sessions run in UTC so every timestamptz read back is a UTC datetime.
JSONB values are serialised with `json_dumps`, which also accepts numpy scalars/arrays and turns
non-finite floats (which JSON and PostgreSQL jsonb refuse) into null.
"""

from __future__ import annotations

import json
import math
import os
import threading
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

DEFAULT_CONNECT_TIMEOUT_S = 10
POOL_SIZE = 5
MAX_OVERFLOW = 10
POOL_RECYCLE_S = 1800
POOL_TIMEOUT_S = 30

_engines: dict[str, sa.Engine] = {}
_lock = threading.Lock()


def normalize_url(url: str | URL) -> URL:
    """The URL with the psycopg 3 driver; refuses anything that is not PostgreSQL."""
    parsed = make_url(url) if isinstance(url, str) else url
    backend = parsed.get_backend_name()
    if backend not in ("postgresql", "postgres"):
        raise ValueError(f"database URL must be a PostgreSQL URL, got backend {backend!r}")
    return parsed.set(drivername="postgresql+psycopg")


def _sanitize(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _sanitize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_sanitize(v) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy scalar or array
        return _sanitize(value.tolist())
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


_STRICT_JSON = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
# The C encoder behind JSONEncoder.encode, built once: encode() builds it anew on every call, which
# cost the bulk upsert more than the encoding itself. No circular-reference bookkeeping (markers
# None): a jsonb value is a tree. Falls back to encode() where the C accelerator is missing.
_ENCODE_C = json.encoder.c_make_encoder and json.encoder.c_make_encoder(
    None, _STRICT_JSON.default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, False)


def _strict_encode(value: Any) -> str:
    if _ENCODE_C is None or isinstance(value, str):
        return _STRICT_JSON.encode(value)
    return "".join(_ENCODE_C(value, 0))


def json_dumps(value: Any) -> str:
    """JSON for a jsonb column: numpy values converted, NaN/inf -> null, datetimes ISO 8601."""
    try:  # plain JSON values need no walk (the common case, and the bulk upsert's hot path)
        return _strict_encode(value)
    except (TypeError, ValueError):
        return json.dumps(_sanitize(value), allow_nan=False, default=str, separators=(",", ":"))


def _cache_key(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def make_engine(url: str | URL) -> sa.Engine:
    """The process-wide pooled engine for `url` (created on first use, then cached)."""
    normalized = normalize_url(url)
    key = _cache_key(normalized)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            timeout = int(os.environ.get("HEIMDALL_DB_CONNECT_TIMEOUT_S", DEFAULT_CONNECT_TIMEOUT_S))
            engine = sa.create_engine(
                normalized,
                pool_pre_ping=True,
                pool_size=POOL_SIZE,
                max_overflow=MAX_OVERFLOW,
                pool_recycle=POOL_RECYCLE_S,
                pool_timeout=POOL_TIMEOUT_S,
                json_serializer=json_dumps,
                connect_args={
                    "connect_timeout": timeout,
                    "options": "-c TimeZone=UTC",
                    "application_name": "heimdall_pipeline",
                },
            )
            _engines[key] = engine
        return engine


def dispose_engine(url: str | URL) -> bool:
    """Closes the pooled connections of the cached engine for `url` and forgets it."""
    key = _cache_key(normalize_url(url))
    with _lock:
        engine = _engines.pop(key, None)
    if engine is None:
        return False
    engine.dispose()
    return True
