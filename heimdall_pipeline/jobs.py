"""Jobs: recording a session (raw_iq → receiver_metrics) and requesting one from the launchpad."""

from dagster import AssetSelection, Config, OpExecutionContext, define_asset_job, job, op
from pydantic import Field

from heimdall_pipeline.partitions import session_partitions, capture_partitions
from heimdall_pipeline.resources import HeimdallDatabase
from heimdall_pipeline.session_requests import request_session
from heimdall_pipeline.sessions import DEFAULT_SAMPLE_RATE_HZ
from heimdall_pipeline.sources.registry import source_kinds

session_job = define_asset_job(
    "session_job",
    selection=AssetSelection.assets("raw_iq", "receiver_metrics"),
    partitions_def=capture_partitions,
    description="Records one session from its receivers and measures every capture.",
)

session_analysis_job = define_asset_job(
    "session_analysis_job",
    selection=AssetSelection.assets("session_summary", "session_localization"),
    partitions_def=session_partitions,
    description="Cross-receiver analysis of sessions: summary and localization (launched by session_analysis_sensor "
                "after each capture run).",
)


class TransmitterConfig(Config):
    """The simulated transmitter; every field left empty takes the session's deterministic default."""

    latitude: float | None = Field(default=None, description="Degrees north")
    longitude: float | None = Field(default=None, description="Degrees east")
    altitude_m: float | None = Field(default=None, description="Metres")
    eirp_dbm: float | None = Field(default=None, description="Effective radiated power, dBm")
    modulation: str | None = Field(default=None, description="carrier, fm_tone or noise")
    offset_hz: float | None = Field(default=None, description="Offset from the centre frequency, Hz")
    shadowing_sigma_db: float | None = Field(default=None, description="Log-normal shadowing per receiver, dB")


class SessionConfig(Config):
    """A session as typed in the launchpad: the request fields of `sessions.Session`, field for
    field (requested_by is the run that asks)."""

    session_key: str | None = Field(default=None, description="Optional key; generated when empty")
    center_frequency_hz: float = Field(description="Centre frequency in Hz, e.g. 7100000 or 145500000")
    duration_s: float = Field(default=10.0, description="Capture length in seconds")
    sample_rate_hz: float = Field(default=DEFAULT_SAMPLE_RATE_HZ, description="IQ sample rate in Hz (KiwiSDR: 12000)")
    receiver_ids: list[str] = Field(default=[], description="Receiver ids; empty = every active receiver")
    source_kind: str = Field(default="auto", description="auto (each receiver by its kind) or one of: "
                                                         + ", ".join(source_kinds()))
    scheduled_for: str | None = Field(default=None, description="ISO-8601 UTC start time; empty = now")
    transmitter: TransmitterConfig | None = Field(default=None, description="Simulated sessions only")

    def request_fields(self) -> dict:
        """The keyword arguments of `validation.validate_session_request` (empty transmitter fields left out)."""
        fields = self.model_dump()
        if fields["transmitter"] is not None:
            fields["transmitter"] = {k: v for k, v in fields["transmitter"].items() if v is not None}
        return fields


@op(description="Validates the request against the receiver registry and stores it; the "
                "session_request_sensor then adds the partitions and launches the session.")
def request_session_op(context: OpExecutionContext, config: SessionConfig, database: HeimdallDatabase) -> str:
    session = request_session(database.engine(), requested_by=f"dagster:{context.run_id}", **config.request_fields())
    context.log.info(f"session {session.session_key} requested at {session.center_frequency_hz:.0f} Hz "
                     f"for {session.duration_s:g} s on {', '.join(session.receiver_ids)}")
    return session.session_key


@job(description="Request an acquisition session (typed form in the launchpad).")
def request_session_job():
    request_session_op()
