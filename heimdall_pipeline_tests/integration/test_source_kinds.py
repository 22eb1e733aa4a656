"""A kind of source added by one module and one registry line: a throwaway kind registered by the
test only (heimdall_pipeline_tests/stored_file_source.py), taken through a whole session on the
real services."""

from __future__ import annotations

import io
import os
from datetime import datetime, timedelta, timezone

import numpy as np

from heimdall_pipeline.db.measurements_repo import measurements_for_session
from heimdall_pipeline.db.receivers_repo import add_receiver, get_receiver, set_receiver_active
from heimdall_pipeline.db.sessions_repo import get_session
from heimdall_pipeline.session_requests import request_session
from heimdall_pipeline.storage.layout import iq_object_key
from heimdall_pipeline_tests.runs import run_session_in_process
from heimdall_pipeline_tests.stored_file_source import stored_file_kind, stored_file_receiver  # noqa: F401 (fixture)


def test_a_session_through_a_kind_registered_by_a_test(stored_file_kind, defs, instance, engine, session_key,
                                                       s3_client, tmp_path):
    rng = np.random.default_rng(7)
    tape = (rng.normal(size=12_000) + 1j * rng.normal(size=12_000)).astype(np.complex64) * 1e-6
    np.save(tmp_path / "tape.npy", tape)
    receiver_id = f"tape{session_key[-6:]}"
    # stored by the receiver registry although no SQL names the kind (migration 2 dropped the check)
    add_receiver(engine, stored_file_receiver(tmp_path / "tape.npy", receiver_id, is_active=False))
    assert get_receiver(engine, receiver_id).kind == "storedfile"
    set_receiver_active(engine, receiver_id, True)
    try:
        # a day ago: only a live source is held to its time
        request_session(engine, requested_by="test", session_key=session_key, center_frequency_hz=7.1e6,
                        duration_s=1, receiver_ids=[receiver_id],
                        scheduled_for=datetime.now(timezone.utc) - timedelta(days=1))
        assert run_session_in_process(defs, instance, engine, session_key).success
    finally:
        set_receiver_active(engine, receiver_id, False)

    assert get_session(engine, session_key).status == "succeeded"
    rows = measurements_for_session(engine, session_key)
    assert [row.receiver_id for row in rows] == [receiver_id] and rows[0].samples_count == 12_000
    body = s3_client.get_object(Bucket=os.environ["HEIMDALL_S3_BUCKET"],
                                Key=iq_object_key(session_key, receiver_id))["Body"].read()
    np.testing.assert_array_equal(np.load(io.BytesIO(body)), tape)
