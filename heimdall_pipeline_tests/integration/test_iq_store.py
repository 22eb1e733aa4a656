"""IQStore against the real SeaweedFS: captures streamed from their own memory (single put and
multipart) come back bit-identical with their SHA-256."""

import os
import uuid
from datetime import datetime, timezone

import numpy as np
import pytest

from heimdall_pipeline.partitions import capture_key
from heimdall_pipeline.receivers import DEFAULT_RECEIVERS
from heimdall_pipeline.sources.capture import ReceiverCapture
from heimdall_pipeline.sources.simulator import Transmitter, simulate_capture


def make_store(**overrides):
    from heimdall_pipeline.resources import build_resources

    return build_resources(os.environ, iq_store=overrides)["iq_store"]


@pytest.mark.parametrize("duration_s, multipart_threshold_mb", [(2.0, 16), (70.0, 5)])
def test_capture_round_trip(embedded_services, s3_client, duration_s, multipart_threshold_mb):
    store = make_store(multipart_threshold_mb=multipart_threshold_mb)
    receiver = DEFAULT_RECEIVERS[0]
    session = f"t{uuid.uuid4().hex[:12]}"
    capture = simulate_capture(session, receiver, Transmitter(frequency_hz=7.1007e6, eirp_dbm=40.0, latitude=48.0,
                                                              longitude=6.0),
                               7.1e6, 12000.0, duration_s, datetime(2026, 1, 1, tzinfo=timezone.utc))
    stored = store.store_capture(ReceiverCapture(receiver, capture))
    assert (stored["bytes"] > multipart_threshold_mb * 1024 * 1024) == (multipart_threshold_mb == 5)
    head = s3_client.head_object(Bucket=store.bucket, Key=stored["s3_key"].split("/", 3)[3])
    assert head["ContentLength"] == stored["bytes"] and head["Metadata"]["sha256"] == stored["sha256"]
    back = store.load_capture(capture_key(session, receiver.id))
    assert np.array_equal(back.samples.view(np.uint64), capture.samples.view(np.uint64))
