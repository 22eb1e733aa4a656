"""Per-capture signal metrics (table `measurements`) and per-session localizations.

`upsert_measurements` writes any number of rows in ONE transaction (all or nothing) as chunked
multi-row `INSERT ... ON CONFLICT (session_key, receiver_id, time) DO UPDATE`, so re-materialising
a partition replaces its rows instead of duplicating them. Values are coerced to plain Python
types (numpy scalars welcome); NaN is stored as NaN in double columns, and as null inside JSON.
Naive datetimes are taken as UTC.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from heimdall_pipeline.db.engine import json_dumps
from heimdall_pipeline.db.migrations import ensure_schema
from heimdall_pipeline.db.models import localizations, measurements

DEFAULT_CHUNK_ROWS = 5000  # rows per INSERT statement (all statements share one transaction)


@dataclasses.dataclass(frozen=True)
class MeasurementRow:
    time: datetime  # capture start (UTC)
    session_key: str
    receiver_id: str
    frequency_mhz: float
    sample_rate_khz: float
    samples_count: int
    snr_db: float | None
    psd_dbm: float
    frequency_offset_hz: float | None
    signal_power_dbm: float | None
    noise_power_dbm: float
    signal_detected: bool
    iq_data_path: str | None = None
    metadata_json: dict[str, Any] = dataclasses.field(default_factory=dict)
    computed_at: datetime | None = None  # None: now
    # GNSS timing (dsp/timing.TimeModel); None for captures that cannot be timed
    measured_sample_rate_hz: float | None = None
    sample_rate_spread_hz: float | None = None
    timing_rms_ns: float | None = None
    core_datetime: str | None = None

    @property
    def key(self) -> tuple[str, str, datetime]:
        return (self.session_key, self.receiver_id, self.time)


MEASUREMENT_COLUMNS = tuple(f.name for f in dataclasses.fields(MeasurementRow))
_KEY_COLUMNS = ("session_key", "receiver_id", "time")
_FLOAT_COLUMNS = ("frequency_mhz", "sample_rate_khz", "snr_db", "psd_dbm", "frequency_offset_hz",
                  "signal_power_dbm", "noise_power_dbm", "measured_sample_rate_hz", "sample_rate_spread_hz",
                  "timing_rms_ns")


@dataclasses.dataclass(frozen=True)
class LocalizationRow:
    time: datetime  # session start (UTC)
    session_key: str
    localizable: bool
    reason: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    eirp_dbm: float | None = None
    path_loss_exponent: float | None = None
    ellipse_semi_major_km: float | None = None
    ellipse_semi_minor_km: float | None = None
    ellipse_orientation_deg: float | None = None
    receivers_used: tuple[str, ...] = ()
    residuals: dict[str, Any] | None = None
    metadata_json: dict[str, Any] = dataclasses.field(default_factory=dict)
    computed_at: datetime | None = None  # None: now


LOCALIZATION_COLUMNS = tuple(f.name for f in dataclasses.fields(LocalizationRow))


def _utc(value: datetime, field: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{field}: expected a datetime, got {type(value).__name__}")
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _measurement_params(row: MeasurementRow, now: datetime) -> tuple:
    values = []
    for name in MEASUREMENT_COLUMNS:
        v = getattr(row, name)
        if name == "time":
            v = _utc(v, "time")
        elif name == "computed_at":
            v = now if v is None else _utc(v, "computed_at")
        elif name in _FLOAT_COLUMNS:
            v = _float(v)
        elif name == "samples_count":
            v = None if v is None else int(v)
        elif name == "signal_detected":
            v = None if v is None else bool(v)
        elif name == "metadata_json":
            v = json_dumps({} if v is None else v)  # sent as text, cast to jsonb by the server
        values.append(v)
    return tuple(values)


_SQL_TYPES = {
    "time": "timestamptz", "session_key": "text", "receiver_id": "text", "frequency_mhz": "float8",
    "sample_rate_khz": "float8", "samples_count": "int8", "snr_db": "float8", "psd_dbm": "float8",
    "frequency_offset_hz": "float8", "signal_power_dbm": "float8", "noise_power_dbm": "float8",
    "signal_detected": "bool", "iq_data_path": "text", "metadata_json": "jsonb", "computed_at": "timestamptz",
    "measured_sample_rate_hz": "float8", "sample_rate_spread_hz": "float8", "timing_rms_ns": "float8",
    "core_datetime": "text",
}


def _upsert_sql() -> str:
    # One array parameter per column, expanded by unnest: 15 parameters whatever the row count,
    # so the statement is small, parsed once and fast (no per-row placeholders).
    # Binary-format arrays (%b); JSON travels as text[] and is cast to jsonb by the server.
    cols = ", ".join(MEASUREMENT_COLUMNS)
    arrays = ", ".join(f"%b::{'text' if c == 'metadata_json' else _SQL_TYPES[c]}[]" for c in MEASUREMENT_COLUMNS)
    selected = ", ".join(f"u.{c}::jsonb" if c == "metadata_json" else f"u.{c}" for c in MEASUREMENT_COLUMNS)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in MEASUREMENT_COLUMNS if c not in _KEY_COLUMNS)
    return (f"INSERT INTO measurements ({cols}) SELECT {selected} FROM unnest({arrays}) AS u({cols}) "
            f"ON CONFLICT (session_key, receiver_id, time) DO UPDATE SET {updates}")


_UPSERT_SQL = _upsert_sql()


def upsert_measurements(engine: sa.Engine, rows: Iterable[MeasurementRow], *,
                        chunk_rows: int = DEFAULT_CHUNK_ROWS) -> int:
    """Inserts or replaces rows in one transaction; returns the number of distinct rows written.

    Rows with the same (session_key, receiver_id, time) within a batch: the last one wins.
    Any failing row (e.g. a NOT NULL column given None) rolls back the whole batch, whatever
    the number of statements (`chunk_rows` rows each) it took.
    """
    ensure_schema(engine)
    now = datetime.now(timezone.utc)
    unique: dict[tuple, tuple] = {}
    for row in rows:
        params = _measurement_params(row, now)
        unique[(params[1], params[2], params[0])] = params
    if not unique:
        return 0
    all_params = list(unique.values())
    chunk_rows = max(1, int(chunk_rows))
    with engine.begin() as conn:
        for start in range(0, len(all_params), chunk_rows):
            columns = tuple(list(col) for col in zip(*all_params[start:start + chunk_rows]))
            conn.exec_driver_sql(_UPSERT_SQL, columns)
    return len(all_params)


def _to_measurement(row: sa.Row) -> MeasurementRow:
    m = row._mapping
    return MeasurementRow(**{name: m[name] for name in MEASUREMENT_COLUMNS})


def measurements_for_session(engine: sa.Engine, session_key: str) -> list[MeasurementRow]:
    ensure_schema(engine)
    stmt = (sa.select(*(measurements.c[c] for c in MEASUREMENT_COLUMNS))
            .where(measurements.c.session_key == session_key)
            .order_by(measurements.c.time, measurements.c.receiver_id))
    with engine.connect() as conn:
        return [_to_measurement(row) for row in conn.execute(stmt)]


def count_measurements(engine: sa.Engine, *, session_key: str | None = None) -> int:
    ensure_schema(engine)
    stmt = sa.select(sa.func.count()).select_from(measurements)
    if session_key is not None:
        stmt = stmt.where(measurements.c.session_key == session_key)
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def upsert_localization(engine: sa.Engine, row: LocalizationRow) -> None:
    """Stores THE localization of a session (replacing any earlier one for that session_key)."""
    ensure_schema(engine)
    values: dict[str, Any] = {}
    for name in LOCALIZATION_COLUMNS:
        v = getattr(row, name)
        if name in ("time", "computed_at"):
            v = None if v is None else _utc(v, name)
        elif name == "localizable":
            v = bool(v)
        elif name == "receivers_used":
            v = [str(r) for r in (v or ())]
        elif name == "metadata_json":
            v = {} if v is None else v
        elif name == "residuals":
            v = sa.null() if v is None else v
        elif name not in ("session_key", "reason", "residuals"):
            v = _float(v)
        values[name] = v
    if values["computed_at"] is None:
        values["computed_at"] = datetime.now(timezone.utc)
    stmt = pg_insert(localizations).values(values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["session_key", "time"],
        set_={c: stmt.excluded[c] for c in LOCALIZATION_COLUMNS if c not in ("session_key", "time")})
    with engine.begin() as conn:
        conn.execute(sa.delete(localizations).where(localizations.c.session_key == values["session_key"],
                                                    localizations.c.time != values["time"]))
        conn.execute(stmt)


def get_localization(engine: sa.Engine, session_key: str) -> LocalizationRow | None:
    ensure_schema(engine)
    stmt = (sa.select(*(localizations.c[c] for c in LOCALIZATION_COLUMNS))
            .where(localizations.c.session_key == session_key)
            .order_by(localizations.c.computed_at.desc()).limit(1))
    with engine.connect() as conn:
        row = conn.execute(stmt).first()
    if row is None:
        return None
    values = dict(row._mapping)
    values["receivers_used"] = tuple(values["receivers_used"] or ())
    return LocalizationRow(**values)


__all__ = [
    "LocalizationRow", "MeasurementRow", "count_measurements", "get_localization",
    "measurements_for_session", "upsert_localization", "upsert_measurements",
]
