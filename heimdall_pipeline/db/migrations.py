"""Versioned schema migrations plus TimescaleDB feature detection.

`migrate(engine)` runs in ONE transaction that first takes a transaction-scoped advisory lock, so
two processes (or threads) migrating at once serialise: the second waits, then finds every version
already recorded in `schema_migrations` and applies nothing. Each migration step is applied once
and recorded with its version.

TimescaleDB is detected at every `migrate` (not a versioned step, because it depends on the server,
not on the schema version):

- extension absent: `CREATE EXTENSION IF NOT EXISTS timescaledb` is tried (TimescaleDB 2.x is a
  trusted extension, so the database owner may create it); if the server lacks it or the role may
  not create it -> measurements/localizations stay plain PostgreSQL tables;
- extension present -> `measurements` and `localizations` become hypertables on `time`
  (`if_not_exists`, `migrate_data`; chunk interval HEIMDALL_TSDB_CHUNK_INTERVAL_DAYS, default 7);
- `SHOW timescaledb.license` = 'timescale' -> also a retention policy on measurements
  (HEIMDALL_TSDB_RETENTION_DAYS, default 365, 0 = none), compression segmented by receiver_id
  after HEIMDALL_TSDB_COMPRESS_AFTER_DAYS (default 30) and the continuous aggregate
  `measurements_hourly` (hourly avg/min/max SNR per receiver). With the 'apache' license these
  are skipped, with the reason in the report.

A feature that fails is reported as skipped with the error; `migrate` never fails for a missing
feature. Each decision is logged once per process and database on the "heimdall.db" logger.
`ensure_schema(engine)` migrates once per engine URL per process and is free afterwards.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from heimdall_pipeline.db.models import (
    CAPTURE_SIGNALS, LOCALIZATION_METHODS, MEASUREMENT_POWER_FIGURES_RULE, MEASUREMENT_SIGNAL_POWER_FIGURES_RULE)

log = logging.getLogger("heimdall.db")

# pg_advisory_xact_lock key shared by every heimdall migrator ("HEIMDALL" in ASCII, as a bigint)
MIGRATION_LOCK_KEY = 0x4845494D44414C4C
HYPERTABLES = ("measurements", "localizations")
CONTINUOUS_AGGREGATE = "measurements_hourly"
FEATURES = ("hypertable", "retention", "compression", "continuous_aggregate")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema: websdrs, sessions, measurements, localizations", (
        """
        CREATE TABLE websdrs (
            id text PRIMARY KEY,
            name text NOT NULL,
            url text NOT NULL,
            kind text NOT NULL,
            location_name text NOT NULL DEFAULT '',
            latitude double precision NOT NULL,
            longitude double precision NOT NULL,
            altitude_m double precision NOT NULL DEFAULT 0,
            is_active boolean NOT NULL DEFAULT true,
            timeout_seconds double precision NOT NULL DEFAULT 30,
            retry_count integer NOT NULL DEFAULT 3,
            max_channels integer NOT NULL DEFAULT 4,
            min_frequency_hz double precision NOT NULL DEFAULT 0,
            max_frequency_hz double precision,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT websdrs_id_slug CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,39}$'),
            CONSTRAINT websdrs_name_length CHECK (char_length(name) BETWEEN 1 AND 200),
            CONSTRAINT websdrs_kind CHECK (kind IN ('kiwisdr', 'simulated')),
            CONSTRAINT websdrs_latitude_range CHECK (latitude BETWEEN -90 AND 90),
            CONSTRAINT websdrs_longitude_range CHECK (longitude BETWEEN -180 AND 180),
            CONSTRAINT websdrs_altitude_range CHECK (altitude_m BETWEEN -500 AND 10000),
            CONSTRAINT websdrs_timeout_positive CHECK (timeout_seconds > 0),
            CONSTRAINT websdrs_retry_count_range CHECK (retry_count BETWEEN 0 AND 10),
            CONSTRAINT websdrs_max_channels_min CHECK (max_channels >= 1),
            CONSTRAINT websdrs_min_frequency_nonnegative CHECK (min_frequency_hz >= 0),
            CONSTRAINT websdrs_frequency_range
                CHECK (max_frequency_hz IS NULL OR max_frequency_hz > min_frequency_hz)
        )
        """,
        """
        CREATE OR REPLACE FUNCTION heimdall_set_updated_at() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            NEW.updated_at := now();
            RETURN NEW;
        END
        $$
        """,
        """
        CREATE TRIGGER websdrs_set_updated_at BEFORE UPDATE ON websdrs
        FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*)
        EXECUTE FUNCTION heimdall_set_updated_at()
        """,
        """
        CREATE TABLE sessions (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            session_key text NOT NULL,
            center_frequency_hz double precision NOT NULL,
            duration_s double precision NOT NULL,
            sample_rate_hz double precision NOT NULL,
            receiver_ids text[] NOT NULL DEFAULT '{}'::text[],
            source_kind text NOT NULL,
            transmitter jsonb,
            requested_at timestamptz NOT NULL DEFAULT now(),
            scheduled_for timestamptz NOT NULL DEFAULT now(),
            status text NOT NULL DEFAULT 'requested',
            requested_by text NOT NULL DEFAULT 'unknown',
            launched_at timestamptz,
            run_id text,
            archived_at timestamptz,
            archived_from_status text,
            CONSTRAINT sessions_session_key_key UNIQUE (session_key),
            CONSTRAINT sessions_status
                CHECK (status IN ('requested', 'launched', 'succeeded', 'failed', 'archived')),
            CONSTRAINT sessions_duration_positive CHECK (duration_s > 0),
            CONSTRAINT sessions_sample_rate_positive CHECK (sample_rate_hz > 0)
        )
        """,
        "CREATE INDEX sessions_status_id_idx ON sessions (status, id)",
        """
        CREATE TABLE measurements (
            time timestamptz NOT NULL,
            session_key text NOT NULL,
            receiver_id text NOT NULL,
            frequency_mhz double precision NOT NULL,
            sample_rate_khz double precision NOT NULL,
            samples_count bigint NOT NULL,
            snr_db double precision,
            psd_dbm double precision NOT NULL,
            frequency_offset_hz double precision,
            signal_power_dbm double precision,
            noise_power_dbm double precision NOT NULL,
            signal_detected boolean NOT NULL DEFAULT false,
            iq_data_path text,
            metadata_json jsonb NOT NULL DEFAULT '{}'::jsonb,
            computed_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT measurements_pkey PRIMARY KEY (session_key, receiver_id, time)
        )
        """,
        "CREATE INDEX measurements_session_time_idx ON measurements (session_key, time)",
        "CREATE INDEX measurements_receiver_time_idx ON measurements (receiver_id, time)",
        """
        CREATE TABLE localizations (
            time timestamptz NOT NULL,
            session_key text NOT NULL,
            localizable boolean NOT NULL,
            reason text,
            latitude double precision,
            longitude double precision,
            eirp_dbm double precision,
            path_loss_exponent double precision,
            ellipse_semi_major_km double precision,
            ellipse_semi_minor_km double precision,
            ellipse_orientation_deg double precision,
            receivers_used text[] NOT NULL DEFAULT '{}'::text[],
            residuals jsonb,
            metadata_json jsonb NOT NULL DEFAULT '{}'::jsonb,
            computed_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT localizations_pkey PRIMARY KEY (session_key, time)
        )
        """,
    )),
    # The receiver kinds are the sources registered in code (sources/registry.py); a list here
    # would be a second copy that a new kind must change. Rows are kept as they are.
    Migration(2, "receiver kinds come from the source registry: drop the websdrs kind check", (
        "ALTER TABLE websdrs DROP CONSTRAINT IF EXISTS websdrs_kind",
    )),
    # Units in names and an explicit power unit: existing rows are dBm captures (the only kind
    # measured so far) and received-power localizations.
    Migration(3, "measurement power units (psd_dbm_hz, power_unit, dBFS and calibration columns); "
                 "localization method", (
        "ALTER TABLE measurements RENAME COLUMN psd_dbm TO psd_dbm_hz",
        "ALTER TABLE measurements ADD COLUMN power_unit text NOT NULL DEFAULT 'dBm'",
        "ALTER TABLE measurements ADD COLUMN signal_power_dbfs double precision",
        "ALTER TABLE measurements ADD COLUMN noise_power_dbfs double precision",
        "ALTER TABLE measurements ADD COLUMN calibration_offset_db double precision",
        "ALTER TABLE measurements ADD COLUMN calibration_spread_db double precision",
        "ALTER TABLE measurements ALTER COLUMN psd_dbm_hz DROP NOT NULL",
        "ALTER TABLE measurements ALTER COLUMN noise_power_dbm DROP NOT NULL",
        "ALTER TABLE measurements ADD CONSTRAINT measurements_power_unit CHECK (power_unit IN ('dBm', 'dBFS'))",
        f"ALTER TABLE measurements ADD CONSTRAINT measurements_power_figures_match_unit "
        f"CHECK ({MEASUREMENT_POWER_FIGURES_RULE})",
        "ALTER TABLE localizations ADD COLUMN method text NOT NULL DEFAULT 'rss'",
        "ALTER TABLE localizations DROP CONSTRAINT localizations_pkey",
        "ALTER TABLE localizations ADD CONSTRAINT localizations_pkey PRIMARY KEY (session_key, method, time)",
    )),
    # Per-receiver outcomes live in the database, not only in Dagster's event log; a session's
    # status carries its reason. Sessions recorded before have no rows here (restore and verify
    # fall back to what is stored in S3 for them).
    Migration(4, "session_captures (per-receiver outcome of a session); sessions.status_reason", (
        "ALTER TABLE sessions ADD COLUMN status_reason text",
        """
        CREATE TABLE session_captures (
            session_key text NOT NULL,
            receiver_id text NOT NULL,
            status text NOT NULL,
            error_type text,
            error_message text,
            attempts integer NOT NULL DEFAULT 0,
            bytes bigint,
            sha256 text,
            start_time timestamptz,
            end_time timestamptz,
            run_id text,
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT session_captures_pkey PRIMARY KEY (session_key, receiver_id),
            CONSTRAINT session_captures_status CHECK (status IN ('stored', 'failed', 'not_requested')),
            CONSTRAINT session_captures_stored_has_object
                CHECK (status <> 'stored' OR (bytes IS NOT NULL AND sha256 IS NOT NULL))
        )
        """,
    )),
    Migration(5, "recording sessions name their upload batch and files; measurements keep the capture's timing", (
        "ALTER TABLE sessions ADD COLUMN IF NOT EXISTS recordings jsonb",
        "ALTER TABLE measurements ADD COLUMN IF NOT EXISTS measured_sample_rate_hz double precision",
        "ALTER TABLE measurements ADD COLUMN IF NOT EXISTS sample_rate_spread_hz double precision",
        "ALTER TABLE measurements ADD COLUMN IF NOT EXISTS timing_rms_ns double precision",
        "ALTER TABLE measurements ADD COLUMN IF NOT EXISTS core_datetime text",
    )),
    # TDoA results: the per-pair lags are a list of objects (a JSON column, not one column per
    # pair); the method is one of the estimators in code.
    Migration(6, "localization TDoA pair lags; localization methods checked", (
        "ALTER TABLE localizations ADD COLUMN pair_lags jsonb",
        f"ALTER TABLE localizations ADD CONSTRAINT localizations_method "
        f"CHECK (method IN ({', '.join(repr(m) for m in LOCALIZATION_METHODS)}))",
    )),
    # Captures are partitions only for the receivers a session asked for (partitions.py), and the
    # table follows: the 'not_requested' rows of the sessions × registry product go. Every capture
    # of one receiver stays one indexed query. A run records several receivers, so a receiver's
    # channels are held as leases here rather than by one run tag per receiver.
    Migration(8, "session_captures: requested receivers only, indexed by receiver and time; receiver channel leases", (
        "DELETE FROM session_captures WHERE status = 'not_requested'",
        "ALTER TABLE session_captures DROP CONSTRAINT session_captures_status",
        "ALTER TABLE session_captures ADD CONSTRAINT session_captures_status CHECK (status IN ('stored', 'failed'))",
        "CREATE INDEX session_captures_receiver_time_idx ON session_captures (receiver_id, start_time)",
        """
        CREATE TABLE receiver_leases (
            receiver_id text NOT NULL REFERENCES websdrs (id) ON DELETE CASCADE,
            run_id text NOT NULL,
            session_key text NOT NULL,
            acquired_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            CONSTRAINT receiver_leases_pkey PRIMARY KEY (receiver_id, run_id)
        )
        """,
    )),
    # Audio captures (OpenWebRX) in the same table: what was captured, the S-meter level, the
    # audio level (relative, after AGC) and the tone's audio frequency; existing rows are IQ.
    Migration(9, "measurements of audio captures: capture_signal, smeter_dbfs, audio_level_dbfs, audio_frequency_hz", (
        "ALTER TABLE measurements ADD COLUMN IF NOT EXISTS capture_signal text NOT NULL DEFAULT 'iq'",
        "ALTER TABLE measurements ADD COLUMN IF NOT EXISTS smeter_dbfs double precision",
        "ALTER TABLE measurements ADD COLUMN IF NOT EXISTS audio_level_dbfs double precision",
        "ALTER TABLE measurements ADD COLUMN IF NOT EXISTS audio_frequency_hz double precision",
        f"ALTER TABLE measurements ADD CONSTRAINT measurements_capture_signal "
        f"CHECK (capture_signal IN ({', '.join(repr(s) for s in CAPTURE_SIGNALS)}))",
        "ALTER TABLE measurements DROP CONSTRAINT measurements_power_figures_match_unit",
        f"ALTER TABLE measurements ADD CONSTRAINT measurements_power_figures_match_unit "
        f"CHECK ({MEASUREMENT_SIGNAL_POWER_FIGURES_RULE})",
    )),
)

SCHEMA_MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL DEFAULT '',
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


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
class SchemaReport:
    database: str
    schema_version: int
    applied_versions: list[int]  # applied by this call (empty when already up to date)
    timescaledb_version: str | None
    license: str | None  # 'apache' | 'timescale' | None (extension absent)
    hypertables: list[str]
    enabled: dict[str, str] = field(default_factory=dict)  # feature -> detail
    skipped: dict[str, str] = field(default_factory=dict)  # feature -> reason

    def feature_enabled(self, feature: str) -> bool:
        return feature in self.enabled

    def summary(self) -> str:
        ts = (f"TimescaleDB {self.timescaledb_version} ({self.license} license)"
              if self.timescaledb_version else "plain PostgreSQL (TimescaleDB absent)")
        parts = [f"schema v{self.schema_version}", ts]
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


def _apply_timescale(conn: sa.Connection, ts: _Timescale, settings: TimescaleSettings,
                     report: SchemaReport) -> None:
    database = report.database
    wanted, skipped = plan_features(ts.version, ts.license, settings)
    report.skipped.update(skipped)
    if ts.version is None:
        report.skipped["hypertable"] = f"TimescaleDB extension absent: {ts.absent_reason}"
        _log_once(database, logging.WARNING,
                  f"TimescaleDB extension absent in database {database} ({ts.absent_reason}): "
                  "measurements and localizations are plain PostgreSQL tables; retention, compression "
                  "and continuous aggregates skipped")
        return
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


def migrate(engine: sa.Engine, settings: TimescaleSettings | None = None) -> SchemaReport:
    """Brings the schema up to date (idempotent, safe concurrently); returns what it found/did."""
    settings = settings or TimescaleSettings.from_env()
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        database = _db_identity(conn)
        ts = _detect_timescaledb(conn)
        conn.execute(sa.text(SCHEMA_MIGRATIONS_DDL))
        applied = set(conn.execute(sa.text("SELECT version FROM schema_migrations")).scalars())
        applied_now: list[int] = []
        for migration in sorted(MIGRATIONS, key=lambda m: m.version):
            if migration.version in applied:
                continue
            for statement in migration.statements:
                conn.exec_driver_sql(statement)
            conn.execute(sa.text("INSERT INTO schema_migrations (version, name) VALUES (:v, :n)"),
                         {"v": migration.version, "n": migration.name})
            applied_now.append(migration.version)
            log.info("applied schema migration %d (%s) to database %s", migration.version,
                     migration.name, database)
        report = SchemaReport(
            database=database,
            schema_version=max(applied | set(applied_now), default=0),
            applied_versions=applied_now,
            timescaledb_version=ts.version,
            license=ts.license,
            hypertables=[],
        )
        _apply_timescale(conn, ts, settings, report)
    return report


_ensured: dict[str, SchemaReport] = {}
_ensure_locks: dict[str, threading.Lock] = {}
_ensure_guard = threading.Lock()


def ensure_schema(engine: sa.Engine) -> SchemaReport:
    """`migrate(engine)` the first time for this engine's URL in this process; cached afterwards."""
    key = engine.url.render_as_string(hide_password=False)
    report = _ensured.get(key)
    if report is not None:
        return report
    with _ensure_guard:
        lock = _ensure_locks.setdefault(key, threading.Lock())
    with lock:
        report = _ensured.get(key)
        if report is None:
            report = migrate(engine)
            _ensured[key] = report
    return report


def forget_schema(engine: sa.Engine) -> None:
    """Drops the ensure_schema cache entry (for tests that drop and recreate a database)."""
    _ensured.pop(engine.url.render_as_string(hide_password=False), None)


__all__ = [
    "MIGRATIONS", "Migration", "SchemaReport", "TimescaleSettings", "ensure_schema", "forget_schema",
    "migrate", "plan_features",
]
