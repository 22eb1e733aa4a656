"""build_resources: the one place the pipeline's resources are built from the environment."""

from __future__ import annotations

import pytest

from heimdall_pipeline.resources import build_resources

ENV = {
    "HEIMDALL_S3_ENDPOINT_URL": "http://127.0.0.1:1", "HEIMDALL_S3_ACCESS_KEY_ID": "key",
    "HEIMDALL_S3_SECRET_ACCESS_KEY": "secret", "HEIMDALL_S3_REGION": "eu-west-1",
    "HEIMDALL_S3_BUCKET": "bucket-x", "HEIMDALL_DATABASE_URL": "postgresql://u:p@127.0.0.1:1/db",
}


def test_values_from_a_mapping_for_direct_use():
    resources = build_resources(ENV, iq_store={"read_ahead": 0}, receiver_network={"retry_backoff_base_s": 0.05})
    assert set(resources) == {"s3", "iq_store", "iq_io_manager", "database", "receiver_network", "survey"}
    assert resources["s3"].endpoint_url == "http://127.0.0.1:1" and resources["s3"].region_name == "eu-west-1"
    store = resources["iq_store"]
    assert store.bucket == "bucket-x" and store.read_ahead == 0 and store.s3 is resources["s3"]
    assert resources["iq_io_manager"].store is store
    assert resources["database"].url == ENV["HEIMDALL_DATABASE_URL"]
    assert resources["receiver_network"].retry_backoff_base_s == 0.05
    assert resources["receiver_network"].kiwisdr_password == ""


def test_code_location_refers_to_variables_not_values(monkeypatch):
    from dagster import EnvVar

    monkeypatch.setenv("HEIMDALL_S3_SECRET_ACCESS_KEY", "do-not-show")
    monkeypatch.delenv("HEIMDALL_KIWISDR_PASSWORD", raising=False)
    resources = build_resources()
    secret = resources["s3"].aws_secret_access_key
    assert isinstance(secret, EnvVar) and secret == "HEIMDALL_S3_SECRET_ACCESS_KEY"
    assert isinstance(resources["database"].url, EnvVar)
    assert resources["receiver_network"].kiwisdr_password == ""  # optional: unset keeps the default


def test_a_missing_setting_is_named_and_a_supplied_s3_resource_is_used():
    incomplete = {k: v for k, v in ENV.items() if k != "HEIMDALL_DATABASE_URL"}
    with pytest.raises(RuntimeError, match="HEIMDALL_DATABASE_URL"):
        build_resources(incomplete)
    from dagster_aws.s3 import S3Resource

    own = S3Resource(endpoint_url="http://elsewhere:9")
    assert build_resources(ENV, s3=own)["iq_store"].s3 is own
    with pytest.raises(ValueError, match="no resource named iq_stor"):
        build_resources(ENV, iq_stor={})


def test_a_command_asks_the_s3_resource_for_a_short_wait():
    # `heimdall verify` reports an unreachable S3 in seconds: its client comes from build_resources too.
    client = build_resources(ENV, s3={"connect_timeout_s": 5.0, "max_attempts": 2})["s3"].get_client()
    assert client.meta.config.connect_timeout == 5.0
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 2}
    assert client.meta.config.s3["addressing_style"] == "path"  # the same settings as every other client
    assert client.meta.endpoint_url == "http://127.0.0.1:1" and client.meta.region_name == "eu-west-1"
    default = build_resources(ENV)["s3"].get_client()
    assert default.meta.config.connect_timeout == 60.0 and default.meta.config.retries["total_max_attempts"] == 5
