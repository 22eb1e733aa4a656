"""OpenWebRX receivers on the real services: added from their status.json by the CLI, and a
session recorded from the test double (heimdall_pipeline_tests/openwebrx_server.py) through
Dagster: stored as real audio in S3, measured into the measurements hypertable, and localized
(TDoA refused with the reason; the received-power estimate names the S-meter figure)."""

import io
import json
import os
from datetime import datetime, timezone

import numpy as np
import pytest

from heimdall_pipeline.sources.registry import get_source

from heimdall_pipeline import cli
from heimdall_pipeline.db.measurements_repo import get_localization, measurements_for_session
from heimdall_pipeline.db.receivers_repo import UnknownReceiverError, add_receiver, get_receiver, set_receiver_active
from heimdall_pipeline.db.sessions_repo import get_session
from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline.session_requests import request_session
from heimdall_pipeline.storage.layout import metadata_object_key, iq_object_key
from heimdall_pipeline_tests.openwebrx_server import FakeOpenWebRX
from heimdall_pipeline_tests.runs import run_session_in_process


def test_receivers_add_reads_the_status_json(engine, session_key, capsys):
    name = f"DL0OWX {session_key}"
    with FakeOpenWebRX(name=name, gps={"lat": 48.137, "lon": 11.575}, asl=519.0, location="Munich") as fake:
        assert cli.main(["receivers", "add", "--kind", "openwebrx", "--url", fake.url]) == 0
    rid = f"dl0owx-{session_key}"
    try:
        receiver = get_receiver(engine, rid)
        assert (receiver.name, receiver.kind, receiver.url) == (name, "openwebrx", fake.url)
        assert (receiver.latitude, receiver.longitude, receiver.altitude_m) == (48.137, 11.575, 519.0)
        assert receiver.location_name == "Munich" and receiver.max_channels == 1
        # the profiles' span: 40 m centre 7.1 MHz - 1.2 MHz .. 20 m centre 14.175 MHz + 1.2 MHz
        assert get_source(receiver.kind).frequency_range_hz(receiver) == (5.9e6, 15.375e6)
        assert "added receiver " + rid in capsys.readouterr().out
    finally:
        set_receiver_active(engine, rid, False)

    with FakeOpenWebRX(name=f"NOGPS {session_key}", gps=None) as fake:
        assert cli.main(["receivers", "add", "--kind", "openwebrx", "--url", fake.url]) == 2
    error = capsys.readouterr().err
    assert f"OpenWebRX receiver 'NOGPS {session_key}'" in error and "gives no position" in error
    with pytest.raises(UnknownReceiverError):
        get_receiver(engine, f"nogps-{session_key}")


def test_an_openwebrx_session_through_dagster(defs, instance, engine, session_key, s3_client):
    rid = f"owrx{session_key[-6:]}"
    with FakeOpenWebRX(tone_hz=14_200_000.0 - 310.0, audio_compression="adpcm") as fake:
        add_receiver(engine, Receiver(id=rid, name="Fake OpenWebRX", url=fake.url, kind="openwebrx",
                                      location_name="Munich", latitude=48.1, longitude=11.6, is_active=False,
                                      max_channels=1))
        set_receiver_active(engine, rid, True)
        try:
            request_session(engine, requested_by="test", session_key=session_key, center_frequency_hz=14.2e6,
                            duration_s=2, receiver_ids=[rid], scheduled_for=datetime.now(timezone.utc))
            assert run_session_in_process(defs, instance, engine, session_key).success
        finally:
            set_receiver_active(engine, rid, False)
    assert len(fake.connections) == 1 and fake.profile_changes == 1  # 7.1 MHz profile -> 20 m

    assert get_session(engine, session_key).status == "succeeded"
    bucket = os.environ["HEIMDALL_S3_BUCKET"]
    metadata = json.loads(s3_client.get_object(Bucket=bucket, Key=metadata_object_key(session_key, rid))["Body"].read())
    glob = metadata["global"]
    assert glob["core:datatype"] == "rf32_le" and glob["heimdall:signal"] == "audio"
    assert glob["core:sample_rate"] == 12_000 and glob["heimdall:audio"]["mode"] == "usb"
    assert "without timestamps" in glob["heimdall:untimed_reason"]
    body = s3_client.get_object(Bucket=bucket, Key=iq_object_key(session_key, rid))["Body"].read()
    audio = np.load(io.BytesIO(body))
    assert audio.dtype == np.float32 and audio.shape == (24_000,)

    (row,) = measurements_for_session(engine, session_key)
    assert row.capture_signal == "audio" and row.signal_detected and row.power_unit == "dBFS"
    assert abs(row.frequency_offset_hz - (-310.0)) < 1.0 and abs(row.audio_frequency_hz - 1140.0) < 1.0
    assert 15.0 < row.snr_db < 21.0  # 20 dB in the channel, less the ADPCM quantization noise
    assert abs(row.smeter_dbfs - 10 * np.log10(1e-6 + 1e-8)) < 1e-6
    assert row.signal_power_dbm is None and row.audio_level_dbfs is not None

    tdoa = get_localization(engine, session_key, "tdoa")
    assert not tdoa.localizable and "audio without timestamps" in tdoa.reason
    rss = get_localization(engine, session_key, "rss")
    assert not rss.localizable and f"{rid} (audio: S-meter dBFS)" in rss.reason
