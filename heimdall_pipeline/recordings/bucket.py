"""A batch's objects in the bucket: uploaded under ``incoming/<batch>/``, read wherever they are,
checked for completeness, refused with an error report beside them, and moved to
``imported/<batch>/`` once their captures are stored and verified. No Dagster: `store` is an
IQStore or anything with its get / put / client() / bucket."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

import numpy as np

from heimdall_pipeline.recordings.plan import POSITIONS_FILE, RecordingImportError
from heimdall_pipeline.sessions import Session
from heimdall_pipeline.storage.kiwi_wav import KiwiWavRecording, decode_kiwi_wav
from heimdall_pipeline.storage.layout import IMPORTED_ROOT, INCOMING_ROOT, iq_object_key, upload_key, upload_prefix

COMPLETE_MARKER = "_complete"
UNTIMED_MARKER = "_untimed"  # the batch accepts files without GNSS time (metrics only, refused by TDoA)
ERRORS_FILE = "_import_errors.json"
QUIET_PERIOD = timedelta(seconds=60)


def batch_objects(store, root: str, batch: str) -> list[dict[str, Any]]:
    """The objects of a batch (list_objects_v2 entries: Key, LastModified, Size)."""
    client, prefix = store.client(), upload_prefix(root, batch)
    out = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=prefix):
        out.extend(page.get("Contents", []))
    return out


def incoming_batches(store) -> list[str]:
    """The batch names under incoming/."""
    client = store.client()
    batches = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=f"{INCOMING_ROOT}/",
                                                                 Delimiter="/"):
        batches.extend(p["Prefix"][len(INCOMING_ROOT) + 1:-1] for p in page.get("CommonPrefixes", []))
    return batches


def batch_is_complete(objects: Sequence[Mapping[str, Any]], now: datetime) -> bool:
    names = {o["Key"].rsplit("/", 1)[-1] for o in objects}
    if COMPLETE_MARKER in names:
        return True
    newest = max((o["LastModified"] for o in objects), default=None)
    return newest is not None and now - newest >= QUIET_PERIOD


def upload_batch(store, batch: str, files: Mapping[str, bytes], positions: bytes | None = None,
                 untimed: bool = False) -> None:
    """Uploads files (name -> bytes, plan.read_import_files), a positions file and the untimed
    marker under incoming/<batch>/, the complete marker last."""
    for name, data in files.items():
        store.put(upload_key(INCOMING_ROOT, batch, name), data, "audio/wav", {})
    if positions is not None:
        store.put(upload_key(INCOMING_ROOT, batch, POSITIONS_FILE), positions, "application/json", {})
    if untimed:
        store.put(upload_key(INCOMING_ROOT, batch, UNTIMED_MARKER), b"", "text/plain", {})
    store.put(upload_key(INCOMING_ROOT, batch, COMPLETE_MARKER), b"", "text/plain", {})


def read_upload(store, batch: str, file_name: str) -> bytes | None:
    """An uploaded file, wherever it is now (incoming/ until verified, then imported/)."""
    for root in (INCOMING_ROOT, IMPORTED_ROOT):
        data = store.get(upload_key(root, batch, file_name))
        if data is not None:
            return data
    return None


def report_errors(store, error: RecordingImportError) -> None:
    """Leaves the batch's problems beside its files (the sensor skips the batch while it is there)."""
    body = json.dumps({"batch": error.batch, "problems": error.as_json()}, indent=2).encode()
    store.put(upload_key(INCOMING_ROOT, error.batch, ERRORS_FILE), body, "application/json", {})


def expected_npy_sha256(recording: KiwiWavRecording) -> str:
    """SHA-256 of the .npy object the file's samples make (storage/iq_format.encode_capture)."""
    samples = np.ascontiguousarray(recording.samples, dtype="<c8")
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(samples))
    digest = hashlib.sha256(header.getvalue())
    digest.update(memoryview(samples).cast("B"))
    return digest.hexdigest()


def finish_batch(store, session: Session) -> bool:
    """Moves the uploads of a recording session to imported/<batch>/ once every capture is
    stored and its .npy object hashes to the file's samples; True when the batch is (now) there.
    Copy, then delete: a crash in between leaves both copies, and the next call completes it."""
    batch, files = session.recordings["batch"], session.recordings["files"]
    incoming = batch_objects(store, INCOMING_ROOT, batch)
    if not incoming:
        return bool(batch_objects(store, IMPORTED_ROOT, batch))
    for receiver_id, file_name in files.items():
        data = read_upload(store, batch, file_name)
        stored = store.get(iq_object_key(session.session_key, receiver_id))
        if data is None or stored is None:
            return False
        recording = decode_kiwi_wav(data, file_name, allow_untimed=bool(session.recordings.get("untimed")))
        if hashlib.sha256(stored).hexdigest() != expected_npy_sha256(recording):
            return False
    client = store.client()
    for entry in incoming:
        name = entry["Key"].rsplit("/", 1)[-1]
        client.copy_object(Bucket=store.bucket, Key=upload_key(IMPORTED_ROOT, batch, name),
                           CopySource={"Bucket": store.bucket, "Key": entry["Key"]})
    for entry in incoming:
        client.delete_object(Bucket=store.bucket, Key=entry["Key"])
    return True
