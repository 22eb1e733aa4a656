"""A kind of source added by one module and one registry line: here a throwaway kind, registered
in this test only, that reads stored IQ files (the shape of the planned `recording` kind), taken
through a whole session on the real services."""

from __future__ import annotations

import io
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

from heimdall_pipeline.db.measurements_repo import measurements_for_session
from heimdall_pipeline.db.receivers_repo import add_receiver, get_receiver, set_receiver_active
from heimdall_pipeline.db.sessions_repo import get_session
from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.session_requests import request_session
from heimdall_pipeline.sources import registry
from heimdall_pipeline.sources.acquisition import AcquisitionError
from heimdall_pipeline.sources.base import Source
from heimdall_pipeline.sources.capture import Capture
from heimdall_pipeline.storage.layout import iq_object_key
from heimdall_pipeline_tests.runs import run_session_in_process


class StoredFileSource(Source):
    """Replays a stored .npy IQ file named by the receiver's file:// URL: not live, any time."""

    kind = "storedfile"
    url_schemes = ("file",)
    live = False
    default_max_frequency_hz = 30e6

    async def capture(self, session, receiver, *, password=""):
        path = Path(urlparse(receiver.url).path)
        if not path.is_file():
            raise AcquisitionError(receiver.id, f"no stored recording at {path}")
        samples = np.load(path)[: session.expected_sample_count]
        return Capture(session.session_key, receiver.id, samples, session.sample_rate_hz,
                       session.center_frequency_hz, session.scheduled_for, self.kind,
                       details={"file": path.name})


@pytest.fixture()
def stored_file_kind(monkeypatch):
    source = StoredFileSource()
    monkeypatch.setitem(registry.SOURCES, source.kind, source)
    return source


def test_a_session_through_a_kind_registered_by_a_test(stored_file_kind, defs, instance, engine, session_key,
                                                       s3_client, tmp_path):
    rng = np.random.default_rng(7)
    tape = (rng.normal(size=12_000) + 1j * rng.normal(size=12_000)).astype(np.complex64) * 1e-6
    np.save(tmp_path / "tape.npy", tape)
    receiver_id = f"tape{session_key[-6:]}"
    # stored by the receiver registry although no SQL names the kind (migration 2 dropped the check)
    add_receiver(engine, Receiver(id=receiver_id, name="tape deck", url=f"file://{tmp_path / 'tape.npy'}",
                                  kind="storedfile", location_name="test", latitude=47.0, longitude=8.0,
                                  is_active=False))
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
