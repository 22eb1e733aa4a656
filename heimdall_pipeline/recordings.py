"""Importing kiwirecorder IQ recordings as one `recording` session, and exporting sessions back.

The one import path: the files of a batch are objects ``incoming/<batch>/`` in the bucket (the CLI
uploads them there; anyone may), optionally with a positions file ``receivers.json`` and the
marker ``_untimed`` (``--untimed``: files without GNSS time are accepted for metrics only).
`import_batch` checks every file (a named KiwiWavError per bad file), registers the receivers the
positions file adds and stores the session in one transaction; the normal graph then records
``raw_iq`` with the `recording` source (sources/kinds/recording.py), which reads the uploads.
`finish_batch` moves the uploads to ``imported/<batch>/`` once every capture is stored and its
.npy object's SHA-256 equals that of the file's own samples.

A batch is complete when it holds the marker object ``_complete`` (the CLI writes it last) or
when nothing in it has changed for QUIET_PERIOD (uploads by other tools). A batch that cannot be
imported gets ``_import_errors.json`` beside its files, naming each file's problem; it is not
tried again until that object is deleted.

Pure of Dagster: `store` is anything with get(key) -> bytes | None, put(key, body, content_type,
metadata), exists(key), client() and bucket (resources/iq_store.IQStore).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import sqlalchemy as sa

from heimdall_pipeline.receivers import InvalidReceiverError, Receiver
from heimdall_pipeline.sessions import InvalidSessionRequestError, Session, validate_session_request
from heimdall_pipeline.storage.kiwi_wav import (
    BadFileNameError, KiwiWavError, KiwiWavName, KiwiWavRecording, decode_kiwi_wav, parse_file_name,
    recording_capture, write_kiwi_wav,
)
from heimdall_pipeline.storage.layout import (
    IMPORTED_ROOT, INCOMING_ROOT, iq_object_key, upload_key, upload_prefix, validate_key_part,
)
from heimdall_pipeline.text import clip

POSITIONS_FILE = "receivers.json"
COMPLETE_MARKER = "_complete"
UNTIMED_MARKER = "_untimed"  # the batch accepts files without GNSS time (metrics only, refused by TDoA)
ERRORS_FILE = "_import_errors.json"
QUIET_PERIOD = timedelta(seconds=60)
RECORDING_KIND = "recording"


# ----------------------------------------------------------------------------- errors


class MissingReceiverNameError(BadFileNameError):
    """kiwirecorder's default name (no --station): the receiver must be named another way."""


class MixedFrequencyError(KiwiWavError):
    """The file is on another frequency than the rest of the batch."""


class NoTimeOverlapError(KiwiWavError):
    """The file does not overlap the others in time."""


class UnknownRecordingReceiverError(KiwiWavError):
    """The file's receiver is not registered and no positions file describes it."""


class DuplicateReceiverError(KiwiWavError):
    """Two files of the batch come from the same receiver."""


class BadPositionsFileError(KiwiWavError):
    """The positions file is not the expected JSON, or a receiver in it is not valid."""


class MissingFileError(KiwiWavError):
    """A path given to the import is not a readable file."""


class DuplicateFileError(KiwiWavError):
    """The same recording (the same bytes) is given more than once."""


class RecordingImportError(ValueError):
    """A batch is refused; `problems` holds one named KiwiWavError per bad file."""

    def __init__(self, batch: str, problems: Sequence[KiwiWavError]):
        self.batch = batch
        self.problems = list(problems)
        lines = "\n".join(f"  {type(p).__name__}: {p}" for p in self.problems)
        super().__init__(f"batch {batch!r}: nothing imported, {len(self.problems)} problem(s):\n{lines}")

    def as_json(self) -> list[dict[str, str]]:
        return [{"file": p.file_name, "error": type(p).__name__, "problem": p.problem} for p in self.problems]


# ----------------------------------------------------------------------------- receivers


def receiver_id_for(name: str) -> str:
    """The receiver id (a key slug) of a station name: 'HB9ODP' -> 'hb9odp', 'JO51xl' -> 'jo51xl'."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.strip().lower()).strip("-_")[:40].rstrip("-_")
    return validate_key_part(slug, field="receiver_id")


def parse_positions(data: bytes, file_name: str = POSITIONS_FILE) -> dict[str, Receiver]:
    """Receivers of a positions file ({"receivers": {name: {latitude, longitude, host?, port?}}}),
    by their original name, as `recording` receivers: they replay their uploads and join other
    sessions only when named (the address, if given, is kept in the URL; `heimdall receivers edit`
    makes one a live kiwisdr receiver)."""
    try:
        entries = json.loads(data)["receivers"]
        if not isinstance(entries, dict):
            raise TypeError("'receivers' is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        raise BadPositionsFileError(file_name, f"not a positions file ({exc})") from None
    out = {}
    for name, entry in entries.items():
        try:
            host = entry.get("host")
            url = f"recording://{host}:{int(entry.get('port', 8073))}" if host else f"recording:{name}"
            out[name] = Receiver(id=receiver_id_for(name), name=name, url=url, kind=RECORDING_KIND,
                                 location_name=str(entry.get("location", name)),
                                 latitude=float(entry["latitude"]), longitude=float(entry["longitude"]),
                                 altitude_m=float(entry.get("altitude_m", 0.0))).validated()
        except (ValueError, KeyError, TypeError, AttributeError, InvalidReceiverError) as exc:
            raise BadPositionsFileError(file_name, f"receiver {name!r}: {exc}") from None
    return out


# ----------------------------------------------------------------------------- planning


@dataclasses.dataclass(frozen=True)
class ImportPlan:
    """What an import stores: the session, the receivers it registers, the decoded files."""

    session: Session
    new_receivers: tuple[Receiver, ...]
    recordings: dict[str, KiwiWavRecording]  # by receiver id


def _span(recording: KiwiWavRecording) -> tuple[datetime, datetime]:
    capture = recording_capture(recording, "span", "span")
    return capture.start_time, capture.start_time + timedelta(seconds=capture.duration_s)


def _overlap(a: tuple[datetime, datetime], b: tuple[datetime, datetime]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _outside_common_time(spans: Mapping[str, tuple[datetime, datetime]]) -> dict[str, list[str]]:
    """The files that do not share the batch's common time, each with the files it misses: the
    files overlapping the most others are kept first (intervals that overlap pairwise share a
    common stretch)."""
    overlaps = {f: sum(_overlap(spans[f], spans[g]) for g in spans if g != f) for f in spans}
    kept: list[str] = []
    apart: dict[str, list[str]] = {}
    for f in sorted(spans, key=lambda f: (-overlaps[f], f)):
        missed = [g for g in kept if not _overlap(spans[f], spans[g])]
        if missed:
            apart[f] = missed
        else:
            kept.append(f)
    return apart


def plan_import(batch: str, files: Mapping[str, bytes], receivers: Sequence[Receiver], *,
                positions: bytes | None = None, receiver_name: str | None = None,
                requested_by: str = "import", untimed: bool = False) -> ImportPlan:
    """Checks a batch (file name -> bytes) against the registry `receivers`; returns the plan or
    raises RecordingImportError with one named error per bad file. receiver_name: the station of a
    single file whose name has none (kiwirecorder's default name). untimed: accept files without
    GNSS time (stored and measured, marked untimed, refused by TDoA)."""
    problems: list[KiwiWavError] = []
    try:
        batch = validate_key_part(batch, field="batch")
    except ValueError as exc:
        raise RecordingImportError(str(batch), [KiwiWavError(str(batch), str(exc))]) from None
    if not files:
        raise RecordingImportError(batch, [KiwiWavError(batch, "no .wav files in the batch")])
    decoded: dict[str, KiwiWavRecording] = {}
    for file_name, data in sorted(files.items()):
        try:
            recording = decode_kiwi_wav(data, file_name, allow_untimed=untimed)
        except KiwiWavError as exc:
            problems.append(exc)
            continue
        if not recording.name.receiver:
            if receiver_name and len(files) == 1:
                recording = dataclasses.replace(recording, name=dataclasses.replace(recording.name,
                                                                                       receiver=receiver_name))
            else:
                problems.append(MissingReceiverNameError(
                    file_name, "the name carries no receiver (kiwirecorder without --station); name it "
                               "YYYYMMDDTHHMMSSZ_<frequency Hz>_<receiver>_iq.wav, or import it alone with --receiver"))
                continue
        decoded[file_name] = recording

    known = {r.id: r for r in receivers}
    by_name: dict[str, Receiver] = {}
    if positions is not None:
        try:
            by_name = parse_positions(positions)
        except BadPositionsFileError as exc:
            problems.append(exc)
    lowered = {name.lower(): r for name, r in by_name.items()}

    # one frequency: the most common one; the others are named
    frequencies = [r.name.frequency_hz for r in decoded.values()]
    frequency = max(set(frequencies), key=frequencies.count) if frequencies else 0.0
    spans = {f: _span(r) for f, r in decoded.items()}
    apart_from = _outside_common_time(spans)
    by_receiver: dict[str, str] = {}
    new: dict[str, Receiver] = {}
    for file_name, recording in decoded.items():
        if recording.name.frequency_hz != frequency:
            problems.append(MixedFrequencyError(
                file_name, f"{recording.name.frequency_hz:g} Hz, while the batch is on {frequency:g} Hz"))
            continue
        if file_name in apart_from:
            start, end = spans[file_name]
            problems.append(NoTimeOverlapError(
                file_name, f"{start.isoformat()}..{end.isoformat()} does not overlap {', '.join(apart_from[file_name])}"))
            continue
        try:
            receiver_id = receiver_id_for(recording.name.receiver)
        except ValueError as exc:
            problems.append(BadFileNameError(file_name, f"receiver {recording.name.receiver!r}: {exc}"))
            continue
        if receiver_id in by_receiver:
            problems.append(DuplicateReceiverError(
                file_name, f"receiver {receiver_id!r} also recorded {by_receiver[receiver_id]}"))
            continue
        if receiver_id not in known:
            described = by_name.get(recording.name.receiver) or lowered.get(recording.name.receiver.lower())
            if described is None:
                problems.append(UnknownRecordingReceiverError(
                    file_name, f"receiver {recording.name.receiver!r} (id {receiver_id!r}) is not registered and "
                               f"no positions file ({POSITIONS_FILE}) describes it"))
                continue
            new[receiver_id] = described
        by_receiver[receiver_id] = file_name
    if problems:
        raise RecordingImportError(batch, problems)

    chosen = {rid: decoded[f] for rid, f in by_receiver.items()}
    start = min(s for s, _ in spans.values())
    end = max(e for _, e in spans.values())
    header_rates = {r.header_rate_hz for r in chosen.values()}
    try:
        session = validate_session_request(
            session_key=batch, center_frequency_hz=frequency, duration_s=(end - start).total_seconds(),
            sample_rate_hz=max(header_rates), receiver_ids=sorted(chosen), source_kind=RECORDING_KIND,
            requested_by=requested_by, scheduled_for=start,
            recordings={"batch": batch, "files": dict(sorted(by_receiver.items())),
                        **({"untimed": True} if untimed else {})},
            receivers=[*receivers, *new.values()])
    except InvalidSessionRequestError as exc:
        raise RecordingImportError(batch, [KiwiWavError(batch, str(exc))]) from None
    return ImportPlan(session=session, new_receivers=tuple(new.values()), recordings=chosen)


def read_import_files(paths: Sequence[Path], positions: Path | None = None,
                      batch: str = "import") -> tuple[dict[str, bytes], bytes | None]:
    """The files of a local import (file name -> bytes) and the positions file's bytes; raises
    RecordingImportError naming every clash, before anything is stored: a path that is not a
    file, the same recording given twice (same bytes, under any name), and two different files
    with one name (one receiver, one start time: the batch keeps one file per name)."""
    problems: list[KiwiWavError] = []
    files: dict[str, bytes] = {}
    origin: dict[str, Path] = {}
    by_digest: dict[str, Path] = {}
    for path in [*paths, *([positions] if positions is not None else [])]:
        try:
            data = path.read_bytes()
        except OSError as exc:
            problems.append(MissingFileError(clip(path, 200), f"cannot be read ({exc.strerror or exc})"))
            continue
        if path is positions:
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in by_digest:
            same = "given twice" if by_digest[digest].resolve() == path.resolve() else f"has the same bytes as {by_digest[digest]}"
            problems.append(DuplicateFileError(clip(path, 200), f"{same}: each recording is imported once"))
            continue
        by_digest[digest] = path
        if path.name in files:
            problems.append(DuplicateReceiverError(
                clip(path, 200), f"has the same name as {origin[path.name]} but other contents: one receiver "
                                 "cannot have recorded two different files from the same start"))
            continue
        files[path.name], origin[path.name] = data, path
    if problems:
        raise RecordingImportError(batch, problems)
    return files, positions.read_bytes() if positions is not None else None


# ----------------------------------------------------------------------------- the bucket


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
    """Uploads files (name -> bytes, read_import_files), a positions file and the untimed marker
    under incoming/<batch>/, the complete marker last."""
    for name, data in files.items():
        store.put(upload_key(INCOMING_ROOT, batch, name), data, "audio/wav", {})
    if positions is not None:
        store.put(upload_key(INCOMING_ROOT, batch, POSITIONS_FILE), positions, "application/json", {})
    if untimed:
        store.put(upload_key(INCOMING_ROOT, batch, UNTIMED_MARKER), b"", "text/plain", {})
    store.put(upload_key(INCOMING_ROOT, batch, COMPLETE_MARKER), b"", "text/plain", {})


def bucket_store():
    """The bucket's store (resources/iq_store.IQStore), built from the environment."""
    import os

    from heimdall_pipeline import settings
    from heimdall_pipeline.resources import build_resources

    settings.load_embedded_env()
    return build_resources(os.environ)["iq_store"]


def read_upload(store, batch: str, file_name: str) -> bytes | None:
    """An uploaded file, wherever it is now (incoming/ until verified, then imported/)."""
    for root in (INCOMING_ROOT, IMPORTED_ROOT):
        data = store.get(upload_key(root, batch, file_name))
        if data is not None:
            return data
    return None


def import_batch(engine: sa.Engine, store, batch: str, *, receiver_name: str | None = None,
                 requested_by: str = "import") -> Session:
    """Creates the session of a batch under incoming/ (idempotent: an existing session of the
    batch is returned). Raises RecordingImportError (nothing stored) when a file is bad."""
    from heimdall_pipeline.db.receivers_repo import list_receivers
    from heimdall_pipeline.db.sessions_repo import get_session, insert_import

    existing = get_session(engine, batch)
    if existing is not None and (existing.recordings or {}).get("batch") == batch:
        return existing
    files: dict[str, bytes] = {}
    positions, untimed = None, False
    for entry in batch_objects(store, INCOMING_ROOT, batch):
        name = entry["Key"].rsplit("/", 1)[-1]
        if name.lower().endswith(".wav"):
            files[name] = store.get(entry["Key"])
        elif name == POSITIONS_FILE:
            positions = store.get(entry["Key"])
        elif name == UNTIMED_MARKER:
            untimed = True
    plan = plan_import(batch, files, list_receivers(engine), positions=positions, receiver_name=receiver_name,
                       requested_by=requested_by, untimed=untimed)
    return insert_import(engine, plan.session, plan.new_receivers)


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


# ----------------------------------------------------------------------------- export


@dataclasses.dataclass(frozen=True)
class ExportedFile:
    path: Path
    receiver_id: str
    scale: float  # samples were multiplied by this to fit int16 full scale (1.0: written as stored)


def kiwi_wav_name(capture, receiver: Receiver) -> KiwiWavName:
    """The file name of a capture: its UTC start to the second, its frequency, the station name."""
    original = capture.details.get("file_name")
    if original:
        try:
            name = parse_file_name(original)
            if name.receiver:
                return name
        except BadFileNameError:
            pass
    return KiwiWavName(start_utc=capture.start_time.replace(microsecond=0), frequency_hz=capture.center_frequency_hz,
                       receiver=receiver.name if re.fullmatch(r"[^/\\_ ]+", receiver.name) else receiver.id)


def export_capture(directory: Path, capture, receiver: Receiver) -> ExportedFile:
    """Writes one capture as a kiwirecorder IQ file. dBFS captures are written as they are
    (bit for bit for imported ones); others (dBm) are scaled to 0.5 of full scale and the factor
    is returned (and recorded by the caller), never clipped."""
    samples = np.asarray(capture.samples)
    scale = 1.0
    peak = float(np.max(np.maximum(np.abs(samples.real), np.abs(samples.imag)))) if samples.size else 0.0
    if capture.power_unit != "dBFS" or peak >= 32767 / 32768:
        scale = 0.5 / peak if peak > 0 else 1.0
        samples = (samples * np.float32(scale)).astype(np.complex64)
    rate = capture.details.get("header_sample_rate_hz") or round(capture.sample_rate_hz)
    path = write_kiwi_wav(directory, kiwi_wav_name(capture, receiver), samples, capture.gps_timestamps, int(rate))
    return ExportedFile(path=path, receiver_id=receiver.id, scale=scale)
