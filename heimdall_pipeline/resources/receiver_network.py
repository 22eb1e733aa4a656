from collections.abc import Sequence

from dagster import ConfigurableResource
from pydantic import Field

from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.sources.acquisition import SessionAcquisition, acquire_session, run_blocking
from heimdall_pipeline.sources.dispatch import SessionPlan, capture_function


class ReceiverNetwork(ConfigurableResource):
    """Records a session from its receivers: simulated or KiwiSDR, each by its kind."""

    kiwisdr_password: str = Field(default="", description="Password for KiwiSDRs that require one")
    retry_backoff_base_s: float = Field(default=0.5, description="First retry waits up to this long")

    def acquire(self, plan: SessionPlan, receivers: Sequence[Receiver]) -> SessionAcquisition:
        """All receivers at once, each with its own timeout and retries; failures are reported,
        never allowed to lose the other receivers' captures."""
        return run_blocking(lambda: acquire_session(
            receivers, capture_function(plan, kiwisdr_password=self.kiwisdr_password),
            retry_backoff_base_s=self.retry_backoff_base_s), name=f"acquire-{plan.session_key}")
