"""baseline: the schema of the hand-written migrator's version 6

The six hand-written migrations (db/migrations.py before Alembic) as one revision: receivers
(websdrs), sessions, session_captures, measurements and localizations, with the same names for
every constraint and index, so a database they made is this revision's schema (`heimdall db
migrate` stamps it here and keeps its rows). The tables are written out, not derived from the
models: a revision is frozen, the models move on.

Measurements and localizations become TimescaleDB hypertables where the server has the extension
(plain PostgreSQL tables otherwise, said in the logs): `timescale.apply_timescale`.

Revision ID: 0001
Revises:
Create Date: 2026-05-01
"""

from __future__ import annotations

from alembic import op

from heimdall_pipeline.db.timescale import apply_timescale

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = ("localizations", "measurements", "session_captures", "sessions", "websdrs")

STATEMENTS = (
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
    # updated_at follows every real change, whoever writes the row (SQL by hand included)
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
        status_reason text,
        recordings jsonb,
        CONSTRAINT sessions_session_key_key UNIQUE (session_key),
        CONSTRAINT sessions_status
            CHECK (status IN ('requested', 'launched', 'succeeded', 'failed', 'archived')),
        CONSTRAINT sessions_duration_positive CHECK (duration_s > 0),
        CONSTRAINT sessions_sample_rate_positive CHECK (sample_rate_hz > 0)
    )
    """,
    "CREATE INDEX sessions_status_id_idx ON sessions (status, id)",
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
    """
    CREATE TABLE measurements (
        time timestamptz NOT NULL,
        session_key text NOT NULL,
        receiver_id text NOT NULL,
        frequency_mhz double precision NOT NULL,
        sample_rate_khz double precision NOT NULL,
        samples_count bigint NOT NULL,
        snr_db double precision,
        psd_dbm_hz double precision,
        frequency_offset_hz double precision,
        signal_power_dbm double precision,
        noise_power_dbm double precision,
        signal_detected boolean NOT NULL DEFAULT false,
        iq_data_path text,
        metadata_json jsonb NOT NULL DEFAULT '{}'::jsonb,
        computed_at timestamptz NOT NULL DEFAULT now(),
        power_unit text NOT NULL DEFAULT 'dBm',
        signal_power_dbfs double precision,
        noise_power_dbfs double precision,
        calibration_offset_db double precision,
        calibration_spread_db double precision,
        measured_sample_rate_hz double precision,
        sample_rate_spread_hz double precision,
        timing_rms_ns double precision,
        core_datetime text,
        CONSTRAINT measurements_pkey PRIMARY KEY (session_key, receiver_id, time),
        CONSTRAINT measurements_power_unit CHECK (power_unit IN ('dBm', 'dBFS')),
        CONSTRAINT measurements_power_figures_match_unit CHECK (
            (power_unit = 'dBm' AND noise_power_dbm IS NOT NULL AND psd_dbm_hz IS NOT NULL
             AND signal_power_dbfs IS NULL AND noise_power_dbfs IS NULL AND calibration_offset_db IS NULL)
            OR (power_unit = 'dBFS' AND noise_power_dbfs IS NOT NULL AND (
                (calibration_offset_db IS NULL AND signal_power_dbm IS NULL AND noise_power_dbm IS NULL
                 AND psd_dbm_hz IS NULL)
                OR (calibration_offset_db IS NOT NULL AND noise_power_dbm IS NOT NULL
                    AND psd_dbm_hz IS NOT NULL))))
    )
    """,
    "CREATE INDEX measurements_session_time_idx ON measurements (session_key, time)",
    "CREATE INDEX measurements_receiver_time_idx ON measurements (receiver_id, time)",
    """
    CREATE TABLE localizations (
        time timestamptz NOT NULL,
        session_key text NOT NULL,
        method text NOT NULL DEFAULT 'rss',
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
        pair_lags jsonb,
        CONSTRAINT localizations_pkey PRIMARY KEY (session_key, method, time),
        CONSTRAINT localizations_method CHECK (method IN ('rss', 'tdoa'))
    )
    """,
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)
    apply_timescale(op.get_bind())


def downgrade() -> None:
    op.execute("DROP MATERIALIZED VIEW IF EXISTS measurements_hourly CASCADE")
    for table in TABLES:
        op.execute(f"DROP TABLE {table}")
    op.execute("DROP FUNCTION heimdall_set_updated_at()")
