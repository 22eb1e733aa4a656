"""The import plan, the stored time model and the export, without services."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pytest

from heimdall_pipeline.recordings import bucket, export, plan
from heimdall_pipeline.assets.metrics import measurement_row
from heimdall_pipeline.receivers import DEFAULT_RECEIVERS
from heimdall_pipeline.sources.simulator import Transmitter, simulate_capture
from heimdall_pipeline.storage import kiwi_wav
from heimdall_pipeline.storage.iq_format import encode_capture, time_model_of
from heimdall_pipeline_tests.data import DCF77_DIR as DCF77

RECEIVER = DEFAULT_RECEIVERS[0]
START = datetime(2026, 11, 23, 13, 26, tzinfo=timezone.utc)


def timed_capture():
    transmitter = Transmitter(frequency_hz=7.1e6 + 1500, eirp_dbm=40.0, latitude=48.0, longitude=5.0)
    return simulate_capture("s1", RECEIVER, transmitter, 7.1e6, 12000.0, 3.0, START)


def test_station_names_become_receiver_ids():
    assert [plan.receiver_id_for(n) for n in ("HB9ODP", "JO51xl", "pa0rdt", "My Kiwi #2")] == [
        "hb9odp", "jo51xl", "pa0rdt", "my-kiwi-2"]
    with pytest.raises(ValueError):
        plan.receiver_id_for("###")


def test_a_timed_simulator_capture_stores_its_time_model():
    capture = timed_capture()
    metadata = encode_capture(capture, RECEIVER, dataset_name="websdr_x.npy").metadata
    model = time_model_of(metadata)
    truth = capture.ground_truth
    assert model.sample_rate_hz == pytest.approx(truth["true_sample_rate_hz"], abs=0.01)
    assert metadata["captures"][0]["core:datetime"] == model.core_datetime
    assert sum(a["core:label"] == "gnss fix" for a in metadata["annotations"]) == model.fresh_fixes
    row = measurement_row(capture, "bucket")
    assert row.measured_sample_rate_hz == model.sample_rate_hz and row.timing_rms_ns == model.timing_rms_ns
    assert row.core_datetime == model.core_datetime


def test_a_capture_that_cannot_be_timed_says_why():
    capture = timed_capture()
    untimed = type(capture)(**{**capture.__dict__, "gps_timestamps": ()})
    metadata = encode_capture(untimed, RECEIVER, dataset_name="websdr_x.npy").metadata
    assert time_model_of(metadata) is None
    assert metadata["global"]["heimdall:untimed_reason"] == "the simulated source gives no GNSS timestamps"
    row = measurement_row(untimed, "bucket")
    assert row.measured_sample_rate_hz is None and "untimed_reason" in row.metadata_json["timing"]


def test_a_dbm_capture_is_scaled_to_full_scale_on_export_never_clipped(tmp_path):
    capture = timed_capture()
    exported = export.export_capture(tmp_path, capture, RECEIVER)
    peak = float(np.max(np.maximum(np.abs(capture.samples.real), np.abs(capture.samples.imag))))
    assert exported.scale == pytest.approx(0.5 / peak)
    back = kiwi_wav.read_kiwi_wav(exported.path)
    assert max(np.abs(back.samples.real).max(), np.abs(back.samples.imag).max()) == pytest.approx(0.5, abs=1 / 32768)
    assert np.allclose(back.samples, capture.samples * exported.scale, atol=1 / 32768)
    assert back.timestamps == capture.gps_timestamps


def test_kiwirecorder_default_name_needs_a_receiver_name():
    data = (DCF77 / "20200813T065220Z_77500_HB9ODP_iq.wav").read_bytes()
    positions = json.dumps({"receivers": {"HB9ODP": {"latitude": 46.5, "longitude": 8.8}}}).encode()
    default = "20200813T065220Z_77500_iq.wav"
    assert kiwi_wav.parse_file_name(default).receiver == ""
    with pytest.raises(plan.RecordingImportError) as info:
        plan.plan_import("b1", {default: data}, [], positions=positions)
    assert isinstance(info.value.problems[0], kiwi_wav.BadFileNameError)
    assert "--receiver" in str(info.value)
    planned = plan.plan_import("b1", {default: data}, [], positions=positions, receiver_name="HB9ODP")
    assert planned.session.recordings == {"batch": "b1", "files": {"hb9odp": default}}
    assert [r.kind for r in planned.new_receivers] == ["recording"]  # no host in the positions file


def test_imported_receivers_join_other_sessions_only_when_named():
    from heimdall_pipeline.validation import default_receivers, validate_session_request

    positions = json.dumps({"receivers": {"HB9ODP": {"latitude": 46.5, "longitude": 8.8,
                                                     "host": "hb9odp.proxy.kiwisdr.com", "port": 8073}}}).encode()
    imported = plan.parse_positions(positions)["HB9ODP"]
    assert (imported.id, imported.kind, imported.url) == ("hb9odp", "recording", "recording://hb9odp.proxy.kiwisdr.com:8073")
    registry = [*DEFAULT_RECEIVERS, imported]
    assert imported not in default_receivers(registry, "auto")  # it would only replay its upload
    assert imported in default_receivers(registry, "simulated")  # the simulator needs only its position
    validate_session_request(center_frequency_hz=7.1e6, duration_s=1, receivers=registry)  # not refused for it


def test_a_batch_is_complete_with_its_marker_or_after_a_quiet_period():
    from datetime import timedelta

    def objects(*names, age_s):
        return [{"Key": f"incoming/b1/{n}", "LastModified": START - timedelta(seconds=age_s)} for n in names]

    assert bucket.batch_is_complete(objects("a_iq.wav", bucket.COMPLETE_MARKER, age_s=0), START)
    assert not bucket.batch_is_complete(objects("a_iq.wav", age_s=10), START)
    quiet = bucket.QUIET_PERIOD.total_seconds()
    assert bucket.batch_is_complete(objects("a_iq.wav", "receivers.json", age_s=quiet), START)
    assert not bucket.batch_is_complete([], START)
