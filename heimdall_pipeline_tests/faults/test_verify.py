"""`heimdall verify`: the comparison (pure) and the command against the shared services."""

from __future__ import annotations

import argparse

import pytest
import sqlalchemy as sa

from heimdall_pipeline import verify
from heimdall_pipeline_tests.runs import run_session_in_process
from heimdall_pipeline.storage.layout import iq_object_key, metadata_object_key, spectrum_object_key
from heimdall_pipeline_tests.faults.conftest import build_defs, request

pytestmark = pytest.mark.faults


def stored_objects(receivers) -> tuple[dict[str, bytes], dict[str, str]]:
    """Session s1's .npy and metadata objects of these receivers, and each capture's SHA-256."""
    from datetime import datetime, timezone

    import numpy as np

    from heimdall_pipeline.capture import Capture
    from heimdall_pipeline.storage.iq_format import encode_capture

    objects: dict[str, bytes] = {}
    sha256: dict[str, str] = {}
    for rx in receivers:
        capture = Capture(session_key="s1", receiver_id=rx.id, samples=np.ones(64, np.complex64),
                          sample_rate_hz=12000.0, center_frequency_hz=7.1e6,
                          start_time=datetime(2026, 1, 1, tzinfo=timezone.utc), source_kind="simulated")
        encoded = encode_capture(capture, rx, dataset_name=f"websdr_{rx.id}.npy")
        objects[iq_object_key("s1", rx.id)] = encoded.npy_bytes
        objects[metadata_object_key("s1", rx.id)] = encoded.metadata_json
        sha256[rx.id] = encoded.sha256
    return objects, sha256


def test_compare_session_names_each_kind_of_mismatch():
    from heimdall_pipeline.receivers import DEFAULT_RECEIVERS

    objects, _ = stored_objects(DEFAULT_RECEIVERS[:4])
    f5len, ph0m, g0mjw, hb9q = (r.id for r in DEFAULT_RECEIVERS[:4])
    del objects[iq_object_key("s1", ph0m)]                                  # metadata without npy
    objects[iq_object_key("s1", g0mjw)] = objects[iq_object_key("s1", g0mjw)][:-8] + b"\0" * 8  # sha
    objects["sessions/s1/localization.png"] = b"x"  # session-level artefact: not a mismatch
    found = verify.compare_session("s1", [f5len, ph0m, g0mjw, "hb9sl"], objects, [f5len, ph0m, g0mjw, "dk0ghz"],
                                   objects.get)
    kinds = {(m.receiver_id, m.kind) for m in found}
    assert kinds == {
        (ph0m, verify.METADATA_WITHOUT_NPY), (ph0m, verify.ROW_WITHOUT_OBJECT),
        (g0mjw, verify.SHA_MISMATCH),
        (hb9q, verify.OBJECT_WITHOUT_ROW), (hb9q, verify.NOT_REQUESTED),
        ("hb9sl", verify.MISSING_CAPTURE),
        ("dk0ghz", verify.ROW_WITHOUT_OBJECT), ("dk0ghz", verify.NOT_REQUESTED),
    }
    assert verify.compare_session("s1", [f5len], {k: v for k, v in objects.items() if f5len in k}, [f5len],
                                  objects.get) == []


def test_verify_compares_objects_with_session_captures():
    """A recorded failure is consistent; a 'stored' row must have its object with the same
    SHA-256, and an object needs its 'stored' row."""
    from heimdall_pipeline.db.captures_repo import CaptureOutcome, failed_outcome
    from heimdall_pipeline.receivers import DEFAULT_RECEIVERS

    objects, sha = stored_objects(DEFAULT_RECEIVERS[:3])
    a, b, c = (r.id for r in DEFAULT_RECEIVERS[:3])
    outcomes = {
        a: CaptureOutcome("s1", a, "stored", bytes=1, sha256=sha[a]),
        b: CaptureOutcome("s1", b, "stored", bytes=1, sha256="0" * 64),      # another object's hash
        "hb9sl": failed_outcome("s1", "hb9sl", "timed out", error_type="Timeout"),  # recorded failure
        "dk0ghz": CaptureOutcome("s1", "dk0ghz", "stored", bytes=1, sha256="1" * 64),  # object gone
    }                                                                        # c: object, no row
    requested = [a, b, c, "hb9sl", "dk0ghz"]
    found = verify.compare_session("s1", requested, objects, [a, b, c], objects.get, outcomes=outcomes)
    assert {(m.receiver_id, m.kind) for m in found} == {
        (b, verify.OUTCOME_SHA_MISMATCH), (c, verify.OBJECT_WITHOUT_OUTCOME),
        ("dk0ghz", verify.STORED_OUTCOME_WITHOUT_OBJECT), ("dk0ghz", verify.MISSING_CAPTURE)}


def test_verify_command_finds_what_was_broken(shared_services_env, engine, instance, s3_client, capsys):
    env = shared_services_env
    bucket = env["HEIMDALL_S3_BUCKET"]
    record = request(engine, receivers=["f5len", "ph0m", "hb9q"])
    assert run_session_in_process(build_defs(env), instance, engine, record.session_key).success
    args = argparse.Namespace(sessions=[record.session_key], since=None, until=None)
    assert verify.run(args) == 0, capsys.readouterr().out
    key = record.session_key

    s3_client.delete_object(Bucket=bucket, Key=iq_object_key(key, "ph0m"))  # a delete marker (versioned)
    data = s3_client.get_object(Bucket=bucket, Key=iq_object_key(key, "hb9q"))["Body"].read()
    s3_client.put_object(Bucket=bucket, Key=iq_object_key(key, "hb9q"), Body=data[:-1] + bytes([data[-1] ^ 1]))
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM measurements WHERE session_key = :k AND receiver_id = 'f5len'"), {"k": key})
    capsys.readouterr()
    assert verify.run(args) == 1
    out = capsys.readouterr().out
    assert f"{key}/ph0m: {verify.METADATA_WITHOUT_NPY}" in out
    assert f"{key}/ph0m: {verify.ROW_WITHOUT_OBJECT}" in out
    assert f"{key}/hb9q: {verify.SHA_MISMATCH}" in out and iq_object_key(key, "hb9q") in out
    assert f"{key}/f5len: {verify.OBJECT_WITHOUT_ROW}" in out

    # range selection by scheduled_for, and refusal of a bad key before any query
    later = argparse.Namespace(sessions=[key], since="2999-01-01T00:00:00Z", until=None)
    assert verify.run(later) == 0
    assert verify.run(argparse.Namespace(sessions=["../x"], since=None, until=None)) == 2
    assert spectrum_object_key(key, "f5len")  # spectrum objects are not mismatches


def test_compare_session_reports_orphan_spectrum_and_unfinished_upload():
    spectrum = spectrum_object_key("s1", "hb9q")
    found = verify.compare_session("s1", [], [spectrum], [], lambda key: None,
                                   uploads=[(iq_object_key("s1", "f5len"), "u-1")])
    assert {(m.receiver_id, m.kind, m.object_key, m.upload_id) for m in found} == {
        ("hb9q", verify.SPECTRUM_WITHOUT_CAPTURE, spectrum, ""),
        (None, verify.UNFINISHED_UPLOAD, iq_object_key("s1", "f5len"), "u-1"),
    }


def _verify_cli(capsys, *argv: str) -> tuple[int, str]:
    from heimdall_pipeline import cli

    code = cli.main(["verify", *argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_verify_reports_and_repairs_what_an_interrupted_session_leaves(shared_services_env, engine, instance,
                                                                       s3_client, capsys):
    from heimdall_pipeline.db.sessions_repo import claim_launch, finish_session

    env = shared_services_env
    bucket = env["HEIMDALL_S3_BUCKET"]
    record = request(engine, receivers=["f5len", "ph0m"])
    key = record.session_key
    assert run_session_in_process(build_defs(env), instance, engine, key).success
    # what S3 dying mid-session leaves: a picture without its capture, a multipart upload never completed
    orphan = spectrum_object_key(key, "hb9q")
    s3_client.put_object(Bucket=bucket, Key=orphan, Body=b"\x89PNG\r\n\x1a\n", ContentType="image/png")
    upload = s3_client.create_multipart_upload(Bucket=bucket, Key=iq_object_key(key, "hb9q"))["UploadId"]
    s3_client.upload_part(Bucket=bucket, Key=iq_object_key(key, "hb9q"), UploadId=upload, PartNumber=1, Body=b"x" * 1024)

    code, out = _verify_cli(capsys, key)
    assert code == 1, out
    assert f"{key}/hb9q: {verify.SPECTRUM_WITHOUT_CAPTURE}" in out and orphan in out
    assert f"{key}: {verify.UNFINISHED_UPLOAD}" in out and upload in out
    assert "heimdall verify --repair" in out

    # a session that may still be writing is left alone
    claim_launch(engine, key, "test:still-writing")
    code, out = _verify_cli(capsys, key, "--repair")
    assert code == 1 and "not repaired: session is launched" in out and "REPAIRED" not in out, out
    assert finish_session(engine, key).status == "succeeded"

    code, out = _verify_cli(capsys, key, "--repair")
    assert code == 0, out
    assert f"REPAIRED {key}/hb9q: {verify.SPECTRUM_WITHOUT_CAPTURE}" in out and f"REPAIRED {key}: {verify.UNFINISHED_UPLOAD}" in out
    assert s3_client.list_multipart_uploads(Bucket=bucket, Prefix=f"sessions/{key}/").get("Uploads", []) == []
    assert verify.list_keys(s3_client, bucket, f"sessions/{key}/") == sorted(
        f(key, rid) for rid in ("f5len", "ph0m") for f in (iq_object_key, metadata_object_key, spectrum_object_key))
    code, out = _verify_cli(capsys, key)
    assert code == 0 and "0 mismatch(es)" in out, out


@pytest.mark.parametrize("setting, value, reason", [
    ("HEIMDALL_S3_ENDPOINT_URL", "http://127.0.0.1:9", "S3 at http://127.0.0.1:9 failed"),
    ("HEIMDALL_S3_SECRET_ACCESS_KEY", "wrong-secret", "refused the keys"),
    ("HEIMDALL_S3_BUCKET", "heimdall-no-such-bucket", "bucket 'heimdall-no-such-bucket' does not exist"),
    ("HEIMDALL_DATABASE_URL", "postgresql+psycopg://heimdall:x@127.0.0.1:9/heimdall", "the database"),
], ids=["s3-down", "wrong-keys", "bucket-missing", "database-down"])
def test_verify_exits_2_with_the_reason_when_it_cannot_check(embedded_services, monkeypatch, capsys,
                                                             setting, value, reason):
    monkeypatch.setenv(setting, value)
    code, out = _verify_cli(capsys)
    assert code == 2, out
    assert "could not check" in out and reason in out and "Traceback" not in out
    assert value not in out or setting != "HEIMDALL_S3_SECRET_ACCESS_KEY"  # the secret is never printed
