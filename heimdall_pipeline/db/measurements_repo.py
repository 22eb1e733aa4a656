"""Per-capture signal metrics (table `measurements`) and per-session localizations.

The row classes are derived from the models (db/models.py), the one declaration of the columns.

`upsert_measurements` writes any number of rows in ONE transaction (all or nothing): COPY into a
temporary table, then one `INSERT ... ON CONFLICT (session_key, receiver_id, time) DO UPDATE`,
so re-materialising a partition replaces its rows instead of duplicating them. Values are coerced
to plain Python types (numpy scalars welcome); NaN is stored as NaN in double columns, and as null
inside JSON. Naive datetimes are taken as UTC.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable

import sqlalchemy as sa

from heimdall_pipeline.db.models import localizations, measurements
from heimdall_pipeline.db.rows import RowWriter, row_class


def _measurement_key(self) -> tuple[str, str, datetime]:
    return (self.session_key, self.receiver_id, self.time)


def _required_power_figures(self) -> dict[str, float | None]:
    """The power figures the row's unit calls for, by column: the noise power and PSD peak (and
    the signal power when detected) in dBm for a dBm or calibrated dBFS capture, and the dBFS
    powers for a dBFS capture."""
    detected = bool(self.signal_detected)
    figures: dict[str, float | None] = {}
    if self.power_unit == "dBFS":
        figures["noise_power_dbfs"] = self.noise_power_dbfs
        if detected:
            figures["signal_power_dbfs"] = self.signal_power_dbfs
    if self.power_unit != "dBFS" or self.calibration_offset_db is not None:
        figures.update(noise_power_dbm=self.noise_power_dbm, psd_dbm_hz=self.psd_dbm_hz)
        if detected:
            figures["signal_power_dbm"] = self.signal_power_dbm
    return figures


def _power_text(self, which: str) -> str:
    """'signal' or 'noise' power for people: in dBm when known, else in dBFS, else '-'."""
    dbm, dbfs = getattr(self, f"{which}_power_dbm"), getattr(self, f"{which}_power_dbfs")
    if dbm is not None:
        return f"{dbm:.1f} dBm"
    return f"{dbfs:.1f} dBFS" if dbfs is not None else "-"


MeasurementRow = row_class(
    measurements, "MeasurementRow",
    "One row of `measurements` (fields: the model's columns; computed_at None: now).",
    key=property(_measurement_key), required_power_figures=_required_power_figures, power_text=_power_text)
LocalizationRow = row_class(
    localizations, "LocalizationRow",
    "One row of `localizations` (fields: the model's columns; method None: 'rss'; computed_at None: now).")

MEASUREMENT_COLUMNS = tuple(c.name for c in measurements.columns)
LOCALIZATION_COLUMNS = tuple(c.name for c in localizations.columns)
_measurements = RowWriter(measurements)
_localizations = RowWriter(localizations)


def upsert_measurements(engine: sa.Engine, rows: Iterable[MeasurementRow]) -> int:
    """Inserts or replaces rows in one transaction; returns the number of distinct rows written.

    Rows with the same (session_key, receiver_id, time) within a batch: the last one wins.
    Any failing row (e.g. a NOT NULL column given None) rolls back the whole batch.
    """
    rows = list(rows)
    if not rows:
        return 0
    with engine.begin() as conn:
        return _measurements.upsert(conn, rows)


def measurements_for_session(engine: sa.Engine, session_key: str) -> list[MeasurementRow]:
    stmt = (sa.select(measurements)
            .where(measurements.c.session_key == session_key)
            .order_by(measurements.c.time, measurements.c.receiver_id))
    with engine.connect() as conn:
        return [_measurements.read(MeasurementRow, row._mapping) for row in conn.execute(stmt)]


def count_measurements(engine: sa.Engine, *, session_key: str | None = None) -> int:
    stmt = sa.select(sa.func.count()).select_from(measurements)
    if session_key is not None:
        stmt = stmt.where(measurements.c.session_key == session_key)
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def upsert_localization(engine: sa.Engine, row: LocalizationRow) -> None:
    """Stores THE localization of a session by the row's method (replacing any earlier one of that
    session and method, whatever its time)."""
    method = row.method or localizations.c.method.server_default.arg
    with engine.begin() as conn:
        conn.execute(sa.delete(localizations).where(localizations.c.session_key == row.session_key,
                                                    localizations.c.method == method))
        _localizations.upsert(conn, [row])


def delete_localization(engine: sa.Engine, session_key: str, method: str) -> int:
    """Removes a session's localization by one method (e.g. an earlier received-power estimate that
    a time-difference one now replaces); returns the number of rows removed."""
    with engine.begin() as conn:
        return conn.execute(sa.delete(localizations).where(localizations.c.session_key == session_key,
                                                           localizations.c.method == method)).rowcount


def get_localization(engine: sa.Engine, session_key: str, method: str = "rss") -> LocalizationRow | None:
    stmt = (sa.select(localizations)
            .where(localizations.c.session_key == session_key, localizations.c.method == method)
            .order_by(localizations.c.computed_at.desc()).limit(1))
    with engine.connect() as conn:
        row = conn.execute(stmt).first()
    if row is None:
        return None
    values = dict(row._mapping)
    values["receivers_used"] = tuple(values["receivers_used"] or ())
    return LocalizationRow(**values)


__all__ = [
    "LOCALIZATION_COLUMNS", "MEASUREMENT_COLUMNS", "LocalizationRow", "MeasurementRow", "count_measurements",
    "delete_localization", "get_localization", "measurements_for_session", "upsert_localization", "upsert_measurements",
]
