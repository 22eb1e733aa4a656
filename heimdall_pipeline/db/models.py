"""SQLAlchemy 2.0 models of the metrics/registry database.

These models are the schema: a change is a model change plus an Alembic revision in
`alembic/versions/` (`alembic revision --autogenerate`, reviewed), applied by `heimdall db migrate`;
a test checks that autogenerate finds no difference between these models and the head revision.

- websdrs: the receiver registry (one row per `receivers.Receiver`; check constraints mirror
  `validation.validate_receiver` so a row written by hand is held to the same rules, except `kind`: the
  kinds are the sources registered in code (sources/registry.py), checked by `validation.validate_receiver`).
- sessions: recording-session requests and their lifecycle
  (requested -> launched -> succeeded|failed -> archived).
- measurements: one row per (session, receiver, capture start): a TimescaleDB hypertable on `time`
  when the extension is available, a plain table otherwise. The primary key includes `time`, as a
  hypertable requires.
- localizations: one row per session and method (hypertable on `time` = session start, likewise).
- session_captures: the outcome of each requested receiver of a session (stored / failed),
  written by the step that stores the capture (db/captures_repo.py); indexed by receiver and time
  for "every capture of receiver X".
- receiver_leases: the channels of a receiver held by running sessions (db/leases_repo.py).

The Measurement and Localization models are the one declaration of their columns: the row
classes, the upserts and the value conversions in `rows.py` / `measurements_repo.py` derive
from them. A new metric is one `SignalMetrics` field, one column here and one Alembic revision.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SESSION_STATUSES = ("requested", "launched", "succeeded", "failed", "archived")
CAPTURE_STATUSES = ("stored", "failed")

TZ = DateTime(timezone=True)

# The unit of a capture's samples (capture.py): mW at the antenna, or the ADC's full scale.
POWER_UNITS = ("dBm", "dBFS")
LOCALIZATION_METHODS = ("rss", "tdoa")  # received power; time difference of arrival
# The dBm columns hold dBm only: a dBm capture fills them (and no dBFS figure); a dBFS capture
# fills its dBFS figures, and its dBm figures only together with the calibration that gave them.
# The baseline revision creates the constraint from this text: change it only with a revision that replaces it.
MEASUREMENT_POWER_FIGURES_RULE = (
    "(power_unit = 'dBm' AND noise_power_dbm IS NOT NULL AND psd_dbm_hz IS NOT NULL"
    " AND signal_power_dbfs IS NULL AND noise_power_dbfs IS NULL AND calibration_offset_db IS NULL)"
    " OR (power_unit = 'dBFS' AND noise_power_dbfs IS NOT NULL AND ("
    "(calibration_offset_db IS NULL AND signal_power_dbm IS NULL AND noise_power_dbm IS NULL"
    " AND psd_dbm_hz IS NULL)"
    " OR (calibration_offset_db IS NOT NULL AND noise_power_dbm IS NOT NULL AND psd_dbm_hz IS NOT NULL)))"
)
CAPTURE_SIGNALS = ("iq", "audio")
# Audio captures (OpenWebRX: demodulated, after AGC) have no dBm figures; their dBFS powers come
# from the receiver's S-meter and are NULL when it sent none. IQ rows keep the rule above.
# Migration 10 replaces the constraint with this text.
MEASUREMENT_SIGNAL_POWER_FIGURES_RULE = (
    f"(capture_signal = 'iq' AND ({MEASUREMENT_POWER_FIGURES_RULE}))"
    " OR (capture_signal = 'audio' AND power_unit = 'dBFS' AND signal_power_dbm IS NULL"
    " AND noise_power_dbm IS NULL AND psd_dbm_hz IS NULL AND calibration_offset_db IS NULL)"
)


class Base(DeclarativeBase):
    pass


class WebSDR(Base):
    __tablename__ = "websdrs"
    __table_args__ = (
        CheckConstraint("id ~ '^[a-z0-9][a-z0-9_-]{0,39}$'", name="websdrs_id_slug"),
        CheckConstraint("char_length(name) BETWEEN 1 AND 200", name="websdrs_name_length"),
        CheckConstraint("latitude BETWEEN -90 AND 90", name="websdrs_latitude_range"),
        CheckConstraint("longitude BETWEEN -180 AND 180", name="websdrs_longitude_range"),
        CheckConstraint("altitude_m BETWEEN -500 AND 10000", name="websdrs_altitude_range"),
        CheckConstraint("timeout_seconds > 0", name="websdrs_timeout_positive"),
        CheckConstraint("retry_count BETWEEN 0 AND 10", name="websdrs_retry_count_range"),
        CheckConstraint("max_channels >= 1", name="websdrs_max_channels_min"),
        CheckConstraint("min_frequency_hz >= 0", name="websdrs_min_frequency_nonnegative"),
        CheckConstraint("max_frequency_hz IS NULL OR max_frequency_hz > min_frequency_hz",
                        name="websdrs_frequency_range"),
    )

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    url: Mapped[str] = mapped_column(Text, nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    location_name: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    latitude: Mapped[float] = mapped_column(Double, nullable=False)
    longitude: Mapped[float] = mapped_column(Double, nullable=False)
    altitude_m: Mapped[float] = mapped_column(Double, nullable=False, server_default="0")
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    timeout_seconds: Mapped[float] = mapped_column(Double, nullable=False, server_default="30")
    retry_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="3")
    max_channels: Mapped[int] = mapped_column(Integer, nullable=False, server_default="4")
    min_frequency_hz: Mapped[float] = mapped_column(Double, nullable=False, server_default="0")
    max_frequency_hz: Mapped[float | None] = mapped_column(Double, nullable=True)
    # updated_at is also maintained by a BEFORE UPDATE trigger (websdrs_set_updated_at)
    created_at: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now(),
                                                 onupdate=func.now())


class Session(Base):
    __tablename__ = "sessions"
    __table_args__ = (
        CheckConstraint("status IN ('requested', 'launched', 'succeeded', 'failed', 'archived')",
                        name="sessions_status"),
        CheckConstraint("duration_s > 0", name="sessions_duration_positive"),
        CheckConstraint("sample_rate_hz > 0", name="sessions_sample_rate_positive"),
        Index("sessions_status_id_idx", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    session_key: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    center_frequency_hz: Mapped[float] = mapped_column(Double, nullable=False)
    duration_s: Mapped[float] = mapped_column(Double, nullable=False)
    sample_rate_hz: Mapped[float] = mapped_column(Double, nullable=False)
    receiver_ids: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False,
                                                    server_default=text("'{}'::text[]"))
    source_kind: Mapped[str] = mapped_column(Text, nullable=False)
    transmitter: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    # recording sessions: the upload batch and each receiver's file (sessions.Session.recordings)
    recordings: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    requested_at: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now())
    scheduled_for: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now())
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default="requested")
    requested_by: Mapped[str] = mapped_column(Text, nullable=False, server_default="unknown")
    launched_at: Mapped[datetime | None] = mapped_column(TZ, nullable=True)
    run_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    archived_at: Mapped[datetime | None] = mapped_column(TZ, nullable=True)
    # the status a session had before it was archived, so mark_restored can put it back
    archived_from_status: Mapped[str | None] = mapped_column(Text, nullable=True)
    # why the session has its status (a failure's reason), set by sessions_repo.transition
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class SessionCapture(Base):
    """One receiver's outcome in one session. A 'stored' row is written only after the capture's
    object and its metadata are in S3, so it never names a missing object."""

    __tablename__ = "session_captures"
    __table_args__ = (
        PrimaryKeyConstraint("session_key", "receiver_id", name="session_captures_pkey"),
        CheckConstraint("status IN ('stored', 'failed')", name="session_captures_status"),
        CheckConstraint("status <> 'stored' OR (bytes IS NOT NULL AND sha256 IS NOT NULL)",
                        name="session_captures_stored_has_object"),
        Index("session_captures_receiver_time_idx", "receiver_id", "start_time"),
    )

    session_key: Mapped[str] = mapped_column(Text, nullable=False)
    receiver_id: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False)
    error_type: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    sha256: Mapped[str | None] = mapped_column(Text, nullable=True)
    start_time: Mapped[datetime | None] = mapped_column(TZ, nullable=True)  # first sample
    end_time: Mapped[datetime | None] = mapped_column(TZ, nullable=True)    # after the last sample
    run_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now())


class ReceiverLease(Base):
    """One channel of a receiver held by one run (a session's recording) until it releases it or
    the lease expires (a worker that died frees its channels at expires_at)."""

    __tablename__ = "receiver_leases"
    __table_args__ = (PrimaryKeyConstraint("receiver_id", "run_id", name="receiver_leases_pkey"),)

    receiver_id: Mapped[str] = mapped_column(Text, ForeignKey("websdrs.id", ondelete="CASCADE"), nullable=False)
    run_id: Mapped[str] = mapped_column(Text, nullable=False)
    session_key: Mapped[str] = mapped_column(Text, nullable=False)
    acquired_at: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(TZ, nullable=False)


class Measurement(Base):
    """One capture's metrics. Powers carry their unit in their names: the dBm columns hold dBm
    only (measured in dBm, or dBFS + a calibration offset); an uncalibrated dBFS capture leaves
    them NULL and fills the dBFS columns. `power_unit` is the unit of the capture's samples.

    An audio capture (`capture_signal` 'audio', an OpenWebRX receiver) is measured on its audio:
    `snr_db` is the tone's SNR in the audio passband, `frequency_offset_hz` the tone's RF offset
    from the session frequency (dial + audio frequency for USB), `audio_frequency_hz` where it
    sounds; its levels: `smeter_dbfs` (the receiver's S-meter, mean channel power in dB relative
    to the SDR's full scale, uncalibrated), `signal_power_dbfs` / `noise_power_dbfs` that power
    split by the measured SNR, and `audio_level_dbfs` (RMS after the receiver's AGC: a relative
    figure only)."""

    __tablename__ = "measurements"
    __table_args__ = (
        PrimaryKeyConstraint("session_key", "receiver_id", "time", name="measurements_pkey"),
        Index("measurements_session_time_idx", "session_key", "time"),
        Index("measurements_receiver_time_idx", "receiver_id", "time"),
        CheckConstraint(f"power_unit IN ({', '.join(repr(u) for u in POWER_UNITS)})", name="measurements_power_unit"),
        CheckConstraint(MEASUREMENT_SIGNAL_POWER_FIGURES_RULE, name="measurements_power_figures_match_unit"),
        CheckConstraint(f"capture_signal IN ({', '.join(repr(s) for s in CAPTURE_SIGNALS)})",
                        name="measurements_capture_signal"),
    )

    time: Mapped[datetime] = mapped_column(TZ, nullable=False)  # capture start
    session_key: Mapped[str] = mapped_column(Text, nullable=False)
    receiver_id: Mapped[str] = mapped_column(Text, nullable=False)
    frequency_mhz: Mapped[float] = mapped_column(Double, nullable=False)
    sample_rate_khz: Mapped[float] = mapped_column(Double, nullable=False)
    samples_count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    power_unit: Mapped[str] = mapped_column(Text, nullable=False, server_default="dBm")
    snr_db: Mapped[float | None] = mapped_column(Double, nullable=True)
    psd_dbm_hz: Mapped[float | None] = mapped_column(Double, nullable=True)  # PSD peak
    frequency_offset_hz: Mapped[float | None] = mapped_column(Double, nullable=True)
    signal_power_dbm: Mapped[float | None] = mapped_column(Double, nullable=True)
    noise_power_dbm: Mapped[float | None] = mapped_column(Double, nullable=True)
    signal_power_dbfs: Mapped[float | None] = mapped_column(Double, nullable=True)
    noise_power_dbfs: Mapped[float | None] = mapped_column(Double, nullable=True)
    calibration_offset_db: Mapped[float | None] = mapped_column(Double, nullable=True)  # dBm - dBFS
    calibration_spread_db: Mapped[float | None] = mapped_column(Double, nullable=True)
    signal_detected: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    iq_data_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    metadata_json: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False,
                                                          server_default=text("'{}'::jsonb"))
    computed_at: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now())
    # GNSS timing of the capture (dsp/timing.TimeModel); NULL where the capture could not be timed
    measured_sample_rate_hz: Mapped[float | None] = mapped_column(Double, nullable=True)
    sample_rate_spread_hz: Mapped[float | None] = mapped_column(Double, nullable=True)
    timing_rms_ns: Mapped[float | None] = mapped_column(Double, nullable=True)
    core_datetime: Mapped[str | None] = mapped_column(Text, nullable=True)  # UTC of sample 0, to the ns
    # audio captures (see the class docstring); NULL for IQ
    capture_signal: Mapped[str] = mapped_column(Text, nullable=False, server_default="iq")
    smeter_dbfs: Mapped[float | None] = mapped_column(Double, nullable=True)
    audio_level_dbfs: Mapped[float | None] = mapped_column(Double, nullable=True)
    audio_frequency_hz: Mapped[float | None] = mapped_column(Double, nullable=True)


class Localization(Base):
    """A session's transmitter position by one method ('rss': received power; 'tdoa': time difference
    of arrival, whose per-pair lags are in `pair_lags`)."""

    __tablename__ = "localizations"
    __table_args__ = (
        PrimaryKeyConstraint("session_key", "method", "time", name="localizations_pkey"),
        CheckConstraint(f"method IN ({', '.join(repr(m) for m in LOCALIZATION_METHODS)})", name="localizations_method"),
    )

    time: Mapped[datetime] = mapped_column(TZ, nullable=False)  # session start
    session_key: Mapped[str] = mapped_column(Text, nullable=False)
    method: Mapped[str] = mapped_column(Text, nullable=False, server_default="rss")
    localizable: Mapped[bool] = mapped_column(Boolean, nullable=False)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    latitude: Mapped[float | None] = mapped_column(Double, nullable=True)
    longitude: Mapped[float | None] = mapped_column(Double, nullable=True)
    eirp_dbm: Mapped[float | None] = mapped_column(Double, nullable=True)
    path_loss_exponent: Mapped[float | None] = mapped_column(Double, nullable=True)
    ellipse_semi_major_km: Mapped[float | None] = mapped_column(Double, nullable=True)
    ellipse_semi_minor_km: Mapped[float | None] = mapped_column(Double, nullable=True)
    ellipse_orientation_deg: Mapped[float | None] = mapped_column(Double, nullable=True)
    receivers_used: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False,
                                                      server_default=text("'{}'::text[]"))
    residuals: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    metadata_json: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False,
                                                          server_default=text("'{}'::jsonb"))
    computed_at: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now())
    # TDoA: one object per receiver pair (lag, its standard error and window spread, fit residual,
    # and with a known transmitter the true lag and the error); NULL for other methods
    pair_lags: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB, nullable=True)


websdrs = WebSDR.__table__
sessions = Session.__table__
measurements = Measurement.__table__
localizations = Localization.__table__
session_captures = SessionCapture.__table__
receiver_leases = ReceiverLease.__table__
