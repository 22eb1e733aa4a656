"""The pipeline's Dagster resources, and `build_resources`: the one place they are built from
the environment (the code location, the CLI, the benchmark, lifecycle commands and the tests)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from heimdall_pipeline import settings
from heimdall_pipeline.resources.database import HeimdallDatabase
from heimdall_pipeline.resources.receiver_network import ReceiverNetwork

__all__ = ["HeimdallDatabase", "ReceiverNetwork", "build_resources"]

# Variables the resources read; the optional ones keep the resource's default when unset.
REQUIRED_SETTINGS = ("HEIMDALL_S3_ENDPOINT_URL", "HEIMDALL_S3_ACCESS_KEY_ID", "HEIMDALL_S3_SECRET_ACCESS_KEY",
                     "HEIMDALL_S3_REGION", "HEIMDALL_S3_BUCKET", "HEIMDALL_DATABASE_URL")
OPTIONAL_SETTINGS = {"HEIMDALL_S3_PUBLIC_ENDPOINT_URL": "", "HEIMDALL_KIWISDR_PASSWORD": ""}


def build_resources(environ: Mapping[str, str] | None = None, *, s3: Any | Mapping[str, Any] = None,
                    **options: Mapping[str, Any]) -> dict[str, Any]:
    """The resources by the names the assets use: s3, iq_store, iq_io_manager, database,
    receiver_network, survey.

    environ None (the code location): each setting is a Dagster `EnvVar`, read by the process that
    executes a run and shown by name, never by value, in the UI.
    environ a mapping (e.g. `os.environ` after `settings.load_embedded_env()`): the settings' values,
    so the resources can be used directly, outside a run. A missing one is an error naming it.
    s3: an S3 resource to use instead of the one built from the settings (tests that hook its
    clients), or field overrides for that one, e.g. a command's short wait
    `s3={"connect_timeout_s": 5, "max_attempts": 2}` (`heimdall verify`).
    options: field overrides per resource name, e.g. `iq_store={"read_ahead": 0}`.
    """
    from dagster import EnvVar

    # the S3 side (dagster_aws, boto3) loads when resources are built, not with HeimdallDatabase
    from heimdall_pipeline.io_managers.s3_iq import S3IQIOManager
    from heimdall_pipeline.resources.iq_store import IQStore
    from heimdall_pipeline.resources.s3 import HeimdallS3Resource
    from heimdall_pipeline.resources.survey import SurveySettings

    unknown = set(options) - {"iq_store", "iq_io_manager", "database", "receiver_network", "survey"}
    if unknown:
        raise ValueError(f"build_resources: no resource named {', '.join(sorted(unknown))}")

    def value(name: str) -> Any:
        if environ is None:
            if name in OPTIONAL_SETTINGS and name not in os.environ:
                return OPTIONAL_SETTINGS[name]
            return EnvVar(name)
        found = environ.get(name) or settings.DEFAULTS.get(name) or OPTIONAL_SETTINGS.get(name)
        if found is None:
            raise RuntimeError(f"environment variable {name} is not set: run `heimdall services up` for the "
                               f"embedded local services, or export {name} for your own deployment")
        return found

    if s3 is None or isinstance(s3, Mapping):
        s3 = HeimdallS3Resource(endpoint_url=value("HEIMDALL_S3_ENDPOINT_URL"),
                                aws_access_key_id=value("HEIMDALL_S3_ACCESS_KEY_ID"),
                                aws_secret_access_key=value("HEIMDALL_S3_SECRET_ACCESS_KEY"),
                                region_name=value("HEIMDALL_S3_REGION"), **(s3 or {}))
    iq_store = IQStore(s3=s3, bucket=value("HEIMDALL_S3_BUCKET"),
                       public_endpoint_url=value("HEIMDALL_S3_PUBLIC_ENDPOINT_URL"), **options.get("iq_store", {}))
    database = HeimdallDatabase(url=value("HEIMDALL_DATABASE_URL"), **options.get("database", {}))
    return {
        "s3": s3,
        "iq_store": iq_store,
        "iq_io_manager": S3IQIOManager(store=iq_store, database=database, **options.get("iq_io_manager", {})),
        "database": database,
        "receiver_network": ReceiverNetwork(kiwisdr_password=value("HEIMDALL_KIWISDR_PASSWORD"),
                                            **options.get("receiver_network", {})),
        "survey": SurveySettings(**options.get("survey", {})),
    }
