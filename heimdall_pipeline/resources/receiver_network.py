from collections.abc import Sequence

from dagster import ConfigurableResource
from pydantic import Field

from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.sessions import Session
from heimdall_pipeline.sources.acquisition import SessionAcquisition, acquire_session, run_blocking
from heimdall_pipeline.sources.base import CaptureIO, UploadReader
from heimdall_pipeline.sources.dispatch import attempt_time_limit, capture_function, session_start


class ReceiverNetwork(ConfigurableResource):
    """Records a session from its receivers, each by the source of its kind (sources/registry.py)."""

    kiwisdr_password: str = Field(default="", description="Password for receivers that require one (KiwiSDRs)")
    retry_backoff_base_s: float = Field(default=0.5, description="First retry waits up to this long")

    def acquire(self, session: Session, receivers: Sequence[Receiver], *,
                read_upload: UploadReader | None = None) -> SessionAcquisition:
        """All receivers at once, each with its own timeout and retries; failures are reported,
        never allowed to lose the other receivers' captures. Live receivers connect first, then
        all store samples from one start instant (sources/dispatch.session_start). read_upload:
        the bucket's uploaded recordings, for receivers recorded by the `recording` kind."""
        start_at = session_start(session, receivers)
        io = CaptureIO(password=self.kiwisdr_password, read_upload=read_upload, start_at=start_at)
        return run_blocking(lambda: acquire_session(
            receivers, capture_function(session, io),
            retry_backoff_base_s=self.retry_backoff_base_s, time_limit_s=attempt_time_limit(session, start_at)),
            name=f"acquire-{session.session_key}")
