"""Importing kiwirecorder IQ recordings through the bucket and the Dagster graph, on the real
services: the shared DCF77 set, the sensor path, every bad-file case, the export round trip."""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import uuid
from pathlib import Path

import numpy as np
import pytest
from dagster import build_sensor_context

from heimdall_pipeline.recordings import bucket, importer, plan
from heimdall_pipeline.db.measurements_repo import measurements_for_session
from heimdall_pipeline.db.receivers_repo import list_receivers
from heimdall_pipeline.db.sessions_repo import get_session
from heimdall_pipeline.storage import kiwi_wav
from heimdall_pipeline.storage.iq_format import time_model_of
from heimdall_pipeline.storage.layout import IMPORTED_ROOT, INCOMING_ROOT, iq_object_key, metadata_object_key
from heimdall_pipeline_tests.runs import run_session_in_process
from heimdall_pipeline_tests.data import DCF77_DIR as DCF77

STATIONS = ("HB9ODP", "JO51xl", "pa0rdt")


def dcf77_file(station: str) -> Path:
    return DCF77 / f"20200813T065220Z_77500_{station}_iq.wav"


@pytest.fixture()
def store(resources):
    return resources["iq_store"]


def keys_under(store, prefix: str) -> list[str]:
    listing = store.client().list_objects_v2(Bucket=store.bucket, Prefix=prefix)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def upload(store, batch: str, files: dict[str, bytes], positions: dict | None = None) -> None:
    for name, data in files.items():
        store.put(f"{INCOMING_ROOT}/{batch}/{name}", data, "audio/wav", {})
    if positions is not None:
        store.put(f"{INCOMING_ROOT}/{batch}/{plan.POSITIONS_FILE}", json.dumps(positions).encode(),
                  "application/json", {})
    store.put(f"{INCOMING_ROOT}/{batch}/{bucket.COMPLETE_MARKER}", b"", "text/plain", {})


def import_sensor_tick(instance, engine, store, cursor=None):
    from heimdall_pipeline.definitions import resources
    from heimdall_pipeline.sensors import recording_import_sensor

    with build_sensor_context(instance=instance, cursor=cursor,
                              resources={"database": resources["database"], "iq_store": store}) as context:
        return recording_import_sensor(context)


def test_dcf77_import_through_dagster_then_export_bit_for_bit(defs, instance, engine, store, session_key, tmp_path):
    bucket.upload_batch(store, session_key, *plan.read_import_files([dcf77_file(s) for s in STATIONS],
                                                                    DCF77 / "receivers.json"))
    session = importer.import_batch(engine, store, session_key)
    assert session.source_kind == "recording" and session.receiver_ids == ("hb9odp", "jo51xl", "pa0rdt")
    registry = {r.id: r for r in list_receivers(engine)}
    assert registry["hb9odp"].name == "HB9ODP" and registry["jo51xl"].name == "JO51xl"
    assert {registry[rid].kind for rid in session.receiver_ids} == {"recording"}

    assert run_session_in_process(defs, instance, engine, session_key).success
    rows = {row.receiver_id: row for row in measurements_for_session(engine, session_key)}
    assert sorted(rows) == ["hb9odp", "jo51xl", "pa0rdt"]
    for station in STATIONS:
        rid = plan.receiver_id_for(station)
        wav = kiwi_wav.read_kiwi_wav(dcf77_file(station))
        stored = np.load(io.BytesIO(store.get(iq_object_key(session_key, rid))))
        assert np.array_equal(stored, wav.samples)  # the .npy is the WAV's samples, bit for bit
        metadata = json.loads(store.get(metadata_object_key(session_key, rid)))
        model = time_model_of(metadata)
        assert 12001.0 < model.sample_rate_hz < 12001.2
        datetime_text = metadata["captures"][0]["core:datetime"]
        assert datetime_text == model.core_datetime and len(datetime_text.split(".")[1]) == 10  # 9 digits + Z
        assert any(a["core:label"] == "gnss fix" for a in metadata["annotations"])
        assert rows[rid].measured_sample_rate_hz == pytest.approx(model.sample_rate_hz, abs=1e-9)
        assert rows[rid].timing_rms_ns is not None and rows[rid].core_datetime == model.core_datetime

    # stored and verified: the uploads move to imported/, and a second call changes nothing
    assert bucket.finish_batch(store, get_session(engine, session_key))
    assert keys_under(store, f"{INCOMING_ROOT}/{session_key}/") == []
    assert len(keys_under(store, f"{IMPORTED_ROOT}/{session_key}/")) == 5  # 3 files, positions, marker
    assert bucket.finish_batch(store, get_session(engine, session_key))

    from heimdall_pipeline.cli import main

    assert main(["session", "export", session_key, "--kiwi-wav", str(tmp_path)]) == 0
    for station in STATIONS:
        assert (tmp_path / dcf77_file(station).name).read_bytes() == dcf77_file(station).read_bytes()
    sidecar = json.loads((tmp_path / f"{session_key}_export.json").read_text())
    assert {f["scale"] for f in sidecar["files"].values()} == {1.0}


def test_sensor_imports_an_uploaded_batch_and_moves_it_once_verified(defs, instance, engine, store, session_key):
    from heimdall_pipeline.sensors import session_request_sensor

    files = {dcf77_file(s).name: dcf77_file(s).read_bytes() for s in STATIONS}
    upload(store, session_key, files, json.loads((DCF77 / "receivers.json").read_text()))
    result = import_sensor_tick(instance, engine, store)
    session = get_session(engine, session_key)
    assert session is not None and session.status == "requested" and session.recordings["batch"] == session_key
    assert json.loads(result.cursor)[session_key].startswith("imported:")
    assert len(keys_under(store, f"{INCOMING_ROOT}/{session_key}/")) == 5  # stays until stored and verified

    # the session's run comes from the request sensor, as for every requested session
    from heimdall_pipeline.definitions import resources

    with build_sensor_context(instance=instance, resources={"database": resources["database"]}) as context:
        requested = session_request_sensor(context)
    assert {run.tags["heimdall/session"] for run in requested.run_requests} >= {session_key}
    assert run_session_in_process(defs, instance, engine, session_key).success

    result = import_sensor_tick(instance, engine, store, cursor=result.cursor)
    assert session_key not in json.loads(result.cursor)
    assert keys_under(store, f"{INCOMING_ROOT}/{session_key}/") == []
    assert len(keys_under(store, f"{IMPORTED_ROOT}/{session_key}/")) == 5


# ----------------------------------------------------------------------------- bad files


def renamed(station: str, new_name: str, frequency: str = "77500") -> tuple[str, bytes]:
    return f"20200813T065220Z_{frequency}_{new_name}_iq.wav", dcf77_file(station).read_bytes()


def patched_fmt(data: bytes, channels: int | None = None, bits: int | None = None) -> bytes:
    out = bytearray(data)
    at = out.index(b"fmt ") + 8
    if channels is not None:
        struct.pack_into("<H", out, at + 2, channels)
    if bits is not None:
        struct.pack_into("<H", out, at + 14, bits)
    return bytes(out)


def shifted_gnss(data: bytes, name: str, seconds: int) -> bytes:
    rec = kiwi_wav.decode_kiwi_wav(data, name)
    stamps = [dataclasses.replace(t, gps_seconds=t.gps_seconds + seconds) if t.has_solution else t
              for t in rec.timestamps]
    return kiwi_wav.encode_kiwi_wav(rec.samples, stamps, rec.header_rate_hz)


def no_gnss(data: bytes, name: str) -> bytes:
    rec = kiwi_wav.decode_kiwi_wav(data, name)
    return kiwi_wav.encode_kiwi_wav(rec.samples, [], rec.header_rate_hz)


BAD_CASES = {
    "not_riff": (lambda d, n: b"JUNK" + d[4:], kiwi_wav.NotRiffWaveError),
    "mono": (lambda d, n: patched_fmt(d, channels=1), kiwi_wav.UnsupportedChannelCountError),
    "24_bit": (lambda d, n: patched_fmt(d, bits=24), kiwi_wav.UnsupportedSampleWidthError),
    "truncated": (lambda d, n: d[:-1001], kiwi_wav.TruncatedChunkError),
    "no_gnss": (no_gnss, kiwi_wav.NoGnssError),
    "no_overlap": (lambda d, n: shifted_gnss(d, n, 3600), plan.NoTimeOverlapError),
}


@pytest.mark.parametrize("case", [*BAD_CASES, "mixed_frequency", "unknown_receiver", "default_name"])
def test_bad_file_is_named_and_nothing_is_half_imported(case, engine, store, session_key, instance):
    tag = uuid.uuid4().hex[:6]
    names = [f"st{tag}{i}" for i in range(3)]  # fresh stations: none registered yet
    files = dict(renamed(station, name) for station, name in zip(STATIONS, names))
    positions = {"receivers": {n: {"latitude": 50.0 + i, "longitude": 8.0} for i, n in enumerate(names)}}
    bad_name = sorted(files)[2]
    if case in BAD_CASES:
        change, expected = BAD_CASES[case]
        files[bad_name] = change(files[bad_name], bad_name)
    elif case == "mixed_frequency":
        data = files.pop(bad_name)
        bad_name = bad_name.replace("_77500_", "_77501_")
        files[bad_name], expected = data, plan.MixedFrequencyError
    elif case == "unknown_receiver":
        del positions["receivers"][names[2]]
        expected = plan.UnknownRecordingReceiverError
    else:  # kiwirecorder's default name, in a batch of several files: no receiver to name
        data = files.pop(bad_name)
        bad_name = "20200813T065220Z_77500_iq.wav"
        files[bad_name], expected = data, plan.MissingReceiverNameError
    upload(store, session_key, files, positions)
    with pytest.raises(plan.RecordingImportError) as info:
        importer.import_batch(engine, store, session_key)
    assert [(type(p), p.file_name) for p in info.value.problems] == [(expected, bad_name)]
    assert get_session(engine, session_key) is None
    assert not {f"st{tag}{i}" for i in range(3)} & {r.id for r in list_receivers(engine)}
    assert keys_under(store, f"sessions/{session_key}/") == []

    # the sensor leaves the named problems beside the files, keeps them, and does not retry
    result = import_sensor_tick(instance, engine, store)
    assert json.loads(result.cursor)[session_key].startswith("refused:")
    report = json.loads(store.get(f"{INCOMING_ROOT}/{session_key}/{bucket.ERRORS_FILE}"))
    assert report["problems"] == [{"file": bad_name, "error": expected.__name__,
                                   "problem": info.value.problems[0].problem}]
    assert get_session(engine, session_key) is None
    assert set(files) <= {k.rsplit("/", 1)[-1] for k in keys_under(store, f"{INCOMING_ROOT}/{session_key}/")}


# ----------------------------------------------------------------------------- the CLI


def test_cli_import_runs_the_session_and_moves_the_uploads(engine, store, session_key, capsys):
    from heimdall_pipeline.cli import main

    files = [str(dcf77_file(s)) for s in STATIONS]
    assert main(["session", "import", *files, "--receivers", str(DCF77 / "receivers.json"), "--key", session_key]) == 0
    assert "moved to imported/" in capsys.readouterr().out
    assert get_session(engine, session_key).status == "succeeded"
    assert len(measurements_for_session(engine, session_key)) == 3
    assert keys_under(store, f"{INCOMING_ROOT}/{session_key}/") == []


def test_cli_import_refuses_a_bad_file_before_uploading_anything(engine, store, session_key, tmp_path, capsys):
    from heimdall_pipeline.cli import main

    bad = tmp_path / "20200813T065220Z_77500_HB9ODP_iq.wav"
    bad.write_bytes(b"JUNK" + dcf77_file("HB9ODP").read_bytes()[4:])
    assert main(["session", "import", str(bad), str(dcf77_file("pa0rdt")), "--key", session_key]) == 2
    err = capsys.readouterr().err
    assert f"NotRiffWaveError: {bad.name}" in err
    assert keys_under(store, f"{INCOMING_ROOT}/{session_key}/") == [] and get_session(engine, session_key) is None
