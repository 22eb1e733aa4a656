"""Jobs: recording a session (raw_iq → receiver_metrics) and requesting one from the launchpad."""

from dagster import AssetSelection, Config, OpExecutionContext, define_asset_job, job, op
from pydantic import Field

from heimdall_pipeline.partitions import session_partitions, session_receiver_partitions
from heimdall_pipeline.resources import HeimdallDatabase
from heimdall_pipeline.session_requests import request_session

session_job = define_asset_job(
    "session_job",
    selection=AssetSelection.assets("raw_iq", "receiver_metrics"),
    partitions_def=session_receiver_partitions,
    description="Records one session from its receivers and measures every capture.",
)

session_analysis_job = define_asset_job(
    "session_analysis_job",
    selection=AssetSelection.assets("session_summary", "session_localization"),
    partitions_def=session_partitions,
    description="Cross-receiver analysis of sessions: summary and localization (also kept fresh by automation).",
)


class SessionRequestConfig(Config):
    """A session request, as typed in the launchpad."""

    center_frequency_hz: float = Field(description="Centre frequency in Hz, e.g. 7100000 or 145500000")
    duration_s: float = Field(default=10.0, description="Capture length in seconds")
    sample_rate_hz: float = Field(default=12000.0, description="IQ sample rate in Hz (KiwiSDR: 12000)")
    receiver_ids: list[str] = Field(default=[], description="Receiver ids; empty = every active receiver")
    source_kind: str = Field(default="auto", description="auto (each receiver by its kind), simulated or kiwisdr")
    session_key: str | None = Field(default=None, description="Optional key; generated when empty")


@op(description="Validates the request against the receiver registry and stores it; the "
                "session_request_sensor then adds the partitions and launches the session.")
def request_session_op(context: OpExecutionContext, config: SessionRequestConfig, database: HeimdallDatabase) -> str:
    request = request_session(database.engine(), requested_by=f"dagster:{context.run_id}", **config.model_dump())
    context.log.info(f"session {request.session_key} requested at {request.center_frequency_hz:.0f} Hz "
                     f"for {request.duration_s:g} s on {', '.join(request.receiver_ids)}")
    return request.session_key


@job(description="Request an acquisition session (typed form in the launchpad).")
def request_session_job():
    request_session_op()
