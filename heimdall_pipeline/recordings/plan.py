"""The checks of an uploaded batch and the `recording` session it makes: file bytes in, an
`ImportPlan` or a RecordingImportError naming each bad file out. Pure: no bucket, no database."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Mapping, Sequence

from heimdall_pipeline.receivers import InvalidReceiverError, Receiver
from heimdall_pipeline.sessions import InvalidSessionRequestError, Session
from heimdall_pipeline.storage.kiwi_wav import (
    BadFileNameError, KiwiWavError, KiwiWavRecording, decode_kiwi_wav, recording_capture,
)
from heimdall_pipeline.storage.layout import validate_key_part
from heimdall_pipeline.text import clip
from heimdall_pipeline.validation import validate_receiver, validate_session_request

POSITIONS_FILE = "receivers.json"
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


class ReceiverRecordedTwiceError(KiwiWavError):
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
                                 altitude_m=float(entry.get("altitude_m", 0.0)))
            out[name] = validate_receiver(out[name])
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
            problems.append(ReceiverRecordedTwiceError(
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
            problems.append(ReceiverRecordedTwiceError(
                clip(path, 200), f"has the same name as {origin[path.name]} but other contents: one receiver "
                                 "cannot have recorded two different files from the same start"))
            continue
        files[path.name], origin[path.name] = data, path
    if problems:
        raise RecordingImportError(batch, problems)
    return files, positions.read_bytes() if positions is not None else None
