"""TimescaleDB feature detection and set-up, applied by `heimdall db migrate` after the revisions.

Not an Alembic revision, because it depends on the server, not on the schema version; it runs at
every migrate and is idempotent:

- extension absent: `CREATE EXTENSION IF NOT EXISTS timescaledb` is tried (TimescaleDB 2.x is a
  trusted extension, so the database owner may create it); if the server lacks it or the role may
  not create it -> measurements/localizations stay plain PostgreSQL tables, said in the logs;
- extension present -> `measurements` and `localizations` become hypertables on `time`
  (`if_not_exists`, `migrate_data`; chunk interval HEIMDALL_TSDB_CHUNK_INTERVAL_DAYS, default 7);
- `SHOW timescaledb.license` = 'timescale' -> also a retention policy on measurements
  (HEIMDALL_TSDB_RETENTION_DAYS, default 365, 0 = none), compression segmented by receiver_id
  after HEIMDALL_TSDB_COMPRESS_AFTER_DAYS (default 30) and the continuous aggregate
  `measurements_hourly` (hourly avg/min/max SNR per receiver). With the 'apache' license these
  are skipped, with the reason in the report.

A feature that fails is reported as skipped with the error; it never fails the migration. Each
decision is logged once per process and database on the "heimdall.db" logger. The baseline
revision calls `apply_timescale` too, so `alembic upgrade head` alone makes the hypertables.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

log = logging.getLogger("heimdall.db")

HYPERTABLES = ("measurements", "localizations")
CONTINUOUS_AGGREGATE = "measurements_hourly"
FEATURES = ("hypertable", "retention", "compression", "continuous_aggregate")


def _days_from_env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not a number of days") from None
    if value < 0:
        raise ValueError(f"environment variable {name}={raw!r} must not be negative")
    return value


@dataclass(frozen=True)
class TimescaleSettings:
    chunk_interval: timedelta = timedelta(days=7)
    retention: timedelta | None = timedelta(days=365)  # None = keep forever
    compress_after: timedelta = timedelta(days=30)

    @classmethod
    def from_env(cls) -> "TimescaleSettings":
        chunk = _days_from_env("HEIMDALL_TSDB_CHUNK_INTERVAL_DAYS", 7)
        retention = _days_from_env("HEIMDALL_TSDB_RETENTION_DAYS", 365)
        compress = _days_from_env("HEIMDALL_TSDB_COMPRESS_AFTER_DAYS", 30)
        if chunk <= 0:
            raise ValueError("HEIMDALL_TSDB_CHUNK_INTERVAL_DAYS must be positive")
        return cls(chunk_interval=timedelta(days=chunk),
                   retention=timedelta(days=retention) if retention > 0 else None,
                   compress_after=timedelta(days=compress))


@dataclass
class TimescaleReport:
    """What the server offers and which features are on."""

    database: str
    timescaledb_version: str | None
    license: str | None  # 'apache' | 'timescale' | None (extension absent)
    hypertables: list[str] = field(default_factory=list)
    enabled: dict[str, str] = field(default_factory=dict)  # feature -> detail
    skipped: dict[str, str] = field(default_factory=dict)  # feature -> reason

    def feature_enabled(self, feature: str) -> bool:
        return feature in self.enabled

    def summary(self) -> str:
        ts = (f"TimescaleDB {self.timescaledb_version} ({self.license} license)"
              if self.timescaledb_version else "plain PostgreSQL (TimescaleDB absent)")
        parts = [ts]
        parts += [f"{k}: on ({v})" for k, v in self.enabled.items()]
        parts += [f"{k}: skipped ({v})" for k, v in self.skipped.items()]
        return "; ".join(parts)


@dataclass(frozen=True)
class _Timescale:
    version: str | None
    license: str | None
    absent_reason: str | None


def plan_features(timescaledb_version: str | None, license: str | None,
                  settings: TimescaleSettings) -> tuple[list[str], dict[str, str]]:
    """Pure decision: (features to enable, {feature: reason skipped})."""
    if timescaledb_version is None:
        reason = "TimescaleDB extension absent"
        return [], {f: reason for f in FEATURES}
    wanted = ["hypertable"]
    skipped: dict[str, str] = {}
    if license != "timescale":
        reason = (f"needs the timescale license; this server has the {license or 'unknown'!r} license "
                  "(Apache-only build)")
        for f in ("retention", "compression", "continuous_aggregate"):
            skipped[f] = reason
        return wanted, skipped
    if settings.retention is None:
        skipped["retention"] = "disabled (HEIMDALL_TSDB_RETENTION_DAYS=0)"
    else:
        wanted.append("retention")
    wanted += ["compression", "continuous_aggregate"]
    return wanted, skipped


_logged: set[tuple[str, str]] = set()
_logged_lock = threading.Lock()


def _log_once(database: str, level: int, message: str) -> None:
    with _logged_lock:
        if (database, message) in _logged:
            return
        _logged.add((database, message))
    log.log(level, message)


def _error_text(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__


def _db_identity(conn: sa.Connection) -> str:
    url = conn.engine.url
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database}"


def _detect_timescaledb(conn: sa.Connection) -> _Timescale:
    version = conn.execute(sa.text(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")).scalar()
    absent_reason = None
    if version is None:
        available = conn.execute(sa.text(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")).scalar()
        if not available:
            absent_reason = "not installed on this PostgreSQL server"
        else:
            try:
                with conn.begin_nested():
                    conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS timescaledb"))
            except DBAPIError as exc:
                absent_reason = (f"not created in this database and this role cannot create it: "
                                 f"{_error_text(exc)}; an administrator can run "
                                 "CREATE EXTENSION timescaledb")
            version = conn.execute(sa.text(
                "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")).scalar()
    if version is None:
        return _Timescale(None, None, absent_reason or "not installed")
    license = None
    try:
        with conn.begin_nested():
            license = conn.execute(sa.text("SHOW timescaledb.license")).scalar()
    except DBAPIError:
        license = None
    return _Timescale(str(version), (license or "").lower() or None, None)


def _version_tuple(version: str) -> tuple[int, ...]:
    out = []
    for part in version.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def _hypertables(conn: sa.Connection) -> list[str]:
    return list(conn.execute(sa.text(
        "SELECT hypertable_name FROM timescaledb_information.hypertables "
        "WHERE hypertable_schema = current_schema() ORDER BY hypertable_name")).scalars())


def _ensure_hypertable(conn: sa.Connection, table: str, ts_version: str, interval: timedelta) -> None:
    if table in _hypertables(conn):
        current = conn.execute(sa.text(
            "SELECT time_interval FROM timescaledb_information.dimensions "
            "WHERE hypertable_schema = current_schema() AND hypertable_name = :t "
            "AND column_name = 'time'"), {"t": table}).scalar()
        if current is not None and current != interval:
            conn.execute(sa.text("SELECT set_chunk_time_interval(CAST(:t AS regclass), CAST(:iv AS interval))"),
                         {"t": table, "iv": interval})
        return
    if _version_tuple(ts_version) >= (2, 13):
        sql = ("SELECT create_hypertable(CAST(:t AS regclass), by_range('time', CAST(:iv AS interval)), "
               "if_not_exists => TRUE, migrate_data => TRUE)")
    else:
        sql = ("SELECT create_hypertable(CAST(:t AS regclass), 'time', chunk_time_interval => CAST(:iv AS interval), "
               "if_not_exists => TRUE, migrate_data => TRUE)")
    conn.execute(sa.text(sql), {"t": table, "iv": interval})


def _enable_retention(conn: sa.Connection, settings: TimescaleSettings) -> str:
    same = conn.execute(sa.text(
        "SELECT (config->>'drop_after')::interval = CAST(:iv AS interval) FROM timescaledb_information.jobs "
        "WHERE proc_name = 'policy_retention' AND hypertable_schema = current_schema() "
        "AND hypertable_name = 'measurements'"), {"iv": settings.retention}).scalar()
    if same is False:  # a policy with another interval: replace it
        conn.execute(sa.text("SELECT remove_retention_policy('measurements', if_exists => TRUE)"))
    conn.execute(sa.text(
        "SELECT add_retention_policy('measurements', CAST(:iv AS interval), if_not_exists => TRUE)"),
        {"iv": settings.retention})
    return f"measurements chunks dropped after {settings.retention.days} days"


def _enable_compression(conn: sa.Connection, settings: TimescaleSettings) -> str:
    enabled = conn.execute(sa.text(
        "SELECT compression_enabled FROM timescaledb_information.hypertables "
        "WHERE hypertable_schema = current_schema() AND hypertable_name = 'measurements'")).scalar()
    if not enabled:
        conn.execute(sa.text(
            "ALTER TABLE measurements SET (timescaledb.compress, "
            "timescaledb.compress_segmentby = 'receiver_id', timescaledb.compress_orderby = 'time DESC')"))
    conn.execute(sa.text(
        "SELECT add_compression_policy('measurements', CAST(:iv AS interval), if_not_exists => TRUE)"),
        {"iv": settings.compress_after})
    return f"measurements compressed after {settings.compress_after.days} days, segmentby receiver_id"


def _enable_continuous_aggregate(conn: sa.Connection, settings: TimescaleSettings) -> str:
    conn.execute(sa.text(f"""
        CREATE MATERIALIZED VIEW IF NOT EXISTS {CONTINUOUS_AGGREGATE}
        WITH (timescaledb.continuous) AS
        SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
               receiver_id,
               avg(snr_db) AS snr_avg_db,
               min(snr_db) AS snr_min_db,
               max(snr_db) AS snr_max_db,
               count(*) AS measurements_count
        FROM measurements
        GROUP BY bucket, receiver_id
        WITH NO DATA
    """))
    conn.execute(sa.text(
        f"SELECT add_continuous_aggregate_policy('{CONTINUOUS_AGGREGATE}', "
        "start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour', "
        "schedule_interval => INTERVAL '1 hour', if_not_exists => TRUE)"))
    return f"{CONTINUOUS_AGGREGATE}: hourly avg/min/max SNR per receiver, refreshed hourly"


_FEATURE_APPLIERS = {
    "retention": _enable_retention,
    "compression": _enable_compression,
    "continuous_aggregate": _enable_continuous_aggregate,
}


def apply_timescale(conn: sa.Connection, settings: TimescaleSettings | None = None) -> TimescaleReport:
    """Detects TimescaleDB and sets up what the server allows (idempotent); logs each decision once."""
    settings = settings or TimescaleSettings.from_env()
    database = _db_identity(conn)
    ts = _detect_timescaledb(conn)
    report = TimescaleReport(database=database, timescaledb_version=ts.version, license=ts.license)
    wanted, skipped = plan_features(ts.version, ts.license, settings)
    report.skipped.update(skipped)
    if ts.version is None:
        report.skipped["hypertable"] = f"TimescaleDB extension absent: {ts.absent_reason}"
        _log_once(database, logging.WARNING,
                  f"TimescaleDB extension absent in database {database} ({ts.absent_reason}): "
                  "measurements and localizations are plain PostgreSQL tables; retention, compression "
                  "and continuous aggregates skipped")
        return report
    days = settings.chunk_interval / timedelta(days=1)
    try:
        with conn.begin_nested():
            for table in HYPERTABLES:
                _ensure_hypertable(conn, table, ts.version, settings.chunk_interval)
        report.enabled["hypertable"] = f"{', '.join(HYPERTABLES)} on time, chunk interval {days:g} days"
    except DBAPIError as exc:
        report.skipped["hypertable"] = f"create_hypertable failed: {_error_text(exc)}"
        for f in wanted:
            if f != "hypertable":
                report.skipped[f] = "needs the hypertable, which could not be created"
        wanted = []
    for feature in wanted:
        if feature == "hypertable":
            continue
        try:
            with conn.begin_nested():
                report.enabled[feature] = _FEATURE_APPLIERS[feature](conn, settings)
        except DBAPIError as exc:
            report.skipped[feature] = f"failed: {_error_text(exc)}"
    report.hypertables = _hypertables(conn)

    head = f"TimescaleDB {ts.version} ({ts.license or 'unknown'} license) in database {database}"
    if "hypertable" in report.enabled:
        head += f": hypertables on {', '.join(report.hypertables)} (chunk interval {days:g} days)"
    else:
        head += f": no hypertables ({report.skipped['hypertable']})"
    if ts.license != "timescale":
        _log_once(database, logging.INFO,
                  head + "; retention, compression and continuous aggregates need the timescale "
                  "license — skipped")
    else:
        on = [f"{k} ({v})" for k, v in report.enabled.items() if k != "hypertable"]
        off = [f"{k} ({v})" for k, v in report.skipped.items()]
        _log_once(database, logging.WARNING if off else logging.INFO,
                  head + (f"; enabled: {', '.join(on)}" if on else "")
                  + (f"; skipped: {', '.join(off)}" if off else ""))
    return report


__all__ = ["FEATURES", "HYPERTABLES", "TimescaleReport", "TimescaleSettings", "apply_timescale", "plan_features"]
