"""Damaged objects, repeated and concurrent materializations, versioning — on the shared services
(simulated receivers, fresh session keys; nothing here stops a server)."""

from __future__ import annotations

import json
import threading

import pytest
from dagster import AssetSelection, DagsterInstance, define_asset_job

from heimdall_pipeline.checks import raw_iq_integrity
from heimdall_pipeline.db.measurements_repo import count_measurements, measurements_for_session
from heimdall_pipeline.partitions import add_session_partitions, capture_key, capture_partitions
from heimdall_pipeline_tests.runs import run_session_in_process
from heimdall_pipeline.storage.captures import load_capture
from heimdall_pipeline.storage.iq_format import CaptureIntegrityError
from heimdall_pipeline.storage.layout import iq_object_key, metadata_object_key
from heimdall_pipeline.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from heimdall_pipeline_tests.faults.conftest import (
    build_defs, check_evaluations, error_text, make_store, request,
)

pytestmark = pytest.mark.faults

RECEIVERS = ["f5len", "hb9q"]
raw_only_job = define_asset_job("raw_iq_only", selection=AssetSelection.assets("raw_iq"),
                                partitions_def=capture_partitions)
metrics_only_job = define_asset_job("metrics_only", selection=AssetSelection.assets("receiver_metrics"),
                                    partitions_def=capture_partitions)
integrity_only_job = define_asset_job("integrity_only", selection=AssetSelection.checks(raw_iq_integrity),
                                      partitions_def=capture_partitions)


def range_tags(instance, session_key: str, receiver_ids: list[str]) -> dict[str, str]:
    """Adds the session's partitions; the run tags of its capture range."""
    [(first, last)] = add_session_partitions(instance, {session_key: receiver_ids})[0].values()
    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}


@pytest.mark.parametrize("damage", ["flipped_byte", "truncated"])
def test_damaged_object_fails_integrity_and_metrics_refuse(shared_services_env, engine, instance, s3_client, damage):
    env = shared_services_env
    bucket = env["HEIMDALL_S3_BUCKET"]
    defs = build_defs(env, extra_jobs=[raw_only_job, metrics_only_job, integrity_only_job])
    record = request(engine, receivers=RECEIVERS)
    tags = range_tags(instance, record.session_key, RECEIVERS)
    assert defs.resolve_job_def("raw_iq_only").execute_in_process(instance=instance, tags=tags).success

    victim = iq_object_key(record.session_key, "hb9q")
    data = s3_client.get_object(Bucket=bucket, Key=victim)["Body"].read()
    damaged = (data[:-100] + bytes([data[-100] ^ 0xFF]) + data[-99:]) if damage == "flipped_byte" else data[: len(data) // 2]
    s3_client.put_object(Bucket=bucket, Key=victim, Body=damaged)  # behind the pipeline's back

    checked = defs.resolve_job_def("integrity_only").execute_in_process(instance=instance, tags=tags, raise_on_error=False)
    [evaluation] = check_evaluations(instance, checked.run_id)["raw_iq_integrity"]
    assert not evaluation.passed
    problems = evaluation.metadata["problems"].value
    assert list(problems) == [capture_key(record.session_key, "hb9q")]
    assert victim in problems[capture_key(record.session_key, "hb9q")]
    assert victim in evaluation.description

    with pytest.raises(CaptureIntegrityError, match=victim):
        load_capture(make_store(env), record.session_key, "hb9q")
    measured = defs.resolve_job_def("metrics_only").execute_in_process(instance=instance, tags=tags, raise_on_error=False)
    assert not measured.success
    text = error_text(measured)
    assert "CaptureIntegrityError" in text and victim in text
    # nothing computed on bad data, and (one transaction) not even the healthy partition's row
    assert count_measurements(engine, session_key=record.session_key) == 0


def latest_npy_matches_metadata(client, bucket: str, session_key: str, rid: str) -> int:
    """Asserts the latest .npy version's sha256 is the metadata's; returns the number of versions."""
    import hashlib

    npy_key, meta_key = iq_object_key(session_key, rid), metadata_object_key(session_key, rid)
    data = client.get_object(Bucket=bucket, Key=npy_key)["Body"].read()
    metadata = json.loads(client.get_object(Bucket=bucket, Key=meta_key)["Body"].read())
    assert hashlib.sha256(data).hexdigest() == metadata["global"]["heimdall:sha256"]
    versions = client.list_object_versions(Bucket=bucket, Prefix=npy_key).get("Versions", [])
    return len([v for v in versions if v["Key"] == npy_key])


def test_same_partition_twice_then_concurrently(shared_services_env, engine, s3_client):
    env = shared_services_env
    bucket = env["HEIMDALL_S3_BUCKET"]
    defs = build_defs(env)
    record = request(engine, receivers=RECEIVERS)
    results = []
    with DagsterInstance.ephemeral() as first:
        for _ in range(2):
            results.append(run_session_in_process(defs, first, engine, record.session_key))
    assert all(r.success for r in results)
    assert sorted(r.receiver_id for r in measurements_for_session(engine, record.session_key)) == RECEIVERS
    for rid in RECEIVERS:
        assert latest_npy_matches_metadata(s3_client, bucket, record.session_key, rid) >= 2  # versions kept

    # two runs of the same session at once (two threads, as two workers would)
    errors, concurrent = [], []

    def worker():
        try:
            with DagsterInstance.ephemeral() as own:
                concurrent.append(run_session_in_process(build_defs(env), own, engine, record.session_key))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(concurrent) == 2 and all(r.success for r in concurrent), (errors, concurrent)
    rows = measurements_for_session(engine, record.session_key)
    assert sorted(r.receiver_id for r in rows) == RECEIVERS  # one row per partition
    for rid in RECEIVERS:
        assert latest_npy_matches_metadata(s3_client, bucket, record.session_key, rid) >= 4


def test_shared_bucket_is_versioned(shared_services_env, s3_client):
    status = s3_client.get_bucket_versioning(Bucket=shared_services_env["HEIMDALL_S3_BUCKET"]).get("Status")
    assert status == "Enabled"
