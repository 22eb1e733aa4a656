"""SurveySettings: what the survey schedule (schedules.py) records."""

from dagster import ConfigurableResource
from pydantic import Field


class SurveySettings(ConfigurableResource):
    """What the survey records: one session per tick, frequencies taken in turn."""

    frequencies_hz: list[float] = Field(default=[7.1e6, 10.1e6, 14.2e6], description="Frequencies in turn")
    duration_s: float = Field(default=10.0)
    sample_rate_hz: float = Field(default=12000.0)
