"""The Dagster code location `heimdall_pipeline`."""

import os

from dagster import Definitions, EnvVar, in_process_executor
from dagster_aws.s3 import S3Resource

from heimdall_pipeline import settings
from heimdall_pipeline.assets.acquisition import raw_iq
from heimdall_pipeline.assets.metrics import receiver_metrics
from heimdall_pipeline.assets.localization import session_localization
from heimdall_pipeline.assets.sessions import session_summary
from heimdall_pipeline.checks import raw_iq_captured, raw_iq_integrity, receiver_metrics_rows
from heimdall_pipeline.io_managers.s3_iq import S3IQIOManager
from heimdall_pipeline.resources.iq_store import IQStore
from heimdall_pipeline.jobs import request_session_job, session_job, session_analysis_job
from heimdall_pipeline.assets.lifecycle import archive_schedule, archive_sessions_job
from heimdall_pipeline.resources import HeimdallDatabase, ReceiverNetwork
from heimdall_pipeline.schedules import SurveySettings, survey_schedule
from heimdall_pipeline.sensors import session_automation_sensor, session_request_sensor

# Local runs find the embedded services' settings; deployments set the variables themselves.
settings.load_embedded_env()

s3 = S3Resource(
    endpoint_url=EnvVar("HEIMDALL_S3_ENDPOINT_URL"),
    aws_access_key_id=EnvVar("HEIMDALL_S3_ACCESS_KEY_ID"),
    aws_secret_access_key=EnvVar("HEIMDALL_S3_SECRET_ACCESS_KEY"),
    region_name=EnvVar("HEIMDALL_S3_REGION"),
)

resources = {
    "s3": s3,
    "iq_store": (iq_store := IQStore(s3=s3, bucket=EnvVar("HEIMDALL_S3_BUCKET"),
                                     public_endpoint_url=os.environ.get("HEIMDALL_S3_PUBLIC_ENDPOINT_URL", ""))),
    "database": (database := HeimdallDatabase(url=EnvVar("HEIMDALL_DATABASE_URL"))),
    "iq_io_manager": S3IQIOManager(store=iq_store, database=database),
    "receiver_network": ReceiverNetwork(
        kiwisdr_password=EnvVar("HEIMDALL_KIWISDR_PASSWORD") if "HEIMDALL_KIWISDR_PASSWORD" in os.environ else ""),
    "survey": SurveySettings(),
}

defs = Definitions(
    assets=[raw_iq, receiver_metrics, session_summary, session_localization],
    asset_checks=[raw_iq_integrity, raw_iq_captured, receiver_metrics_rows],
    jobs=[session_job, session_analysis_job, request_session_job, archive_sessions_job],
    sensors=[session_request_sensor, session_automation_sensor],
    schedules=[survey_schedule, archive_schedule],
    resources=resources,
    # A session run already records its receivers concurrently; one process per step would only
    # add a Python start-up per step (seconds each on a 2-core machine).
    executor=in_process_executor,
)
