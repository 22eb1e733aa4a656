"""`heimdall verify`: stored IQ objects against measurement rows and requested receivers.

For each session of the range (keys given, or `--since/--until` on scheduled_for, default every
non-archived session) it lists the session's S3 objects, reads every .npy with its SigMF metadata
(SHA-256 verified) and compares with the `measurements` rows and the session's requested
receivers. It also reports what a session that died mid-write leaves behind: spectrum PNGs without
their capture and unfinished multipart uploads; `--repair` removes those (only of finished sessions:
a running one may still be writing) and says what it removed. Captures, metadata and rows are never
touched: a damaged capture needs the session re-run.

Exit codes: 0 consistent, 1 mismatches found (after --repair: mismatches left), 2 could not check
(bad input, S3 unreachable, keys refused, bucket missing, database unreachable), with the reason.

`compare_session` holds the comparison and is pure apart from the `read` callable it is given.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from heimdall_pipeline import settings
from heimdall_pipeline.outages import outage_message
from heimdall_pipeline.storage.iq_format import capture_from_stored, metadata_sha256
from heimdall_pipeline.storage.layout import (
    InvalidKeyError, iq_object_key, metadata_object_key, parse_object_key, session_prefix, spectrum_object_key,
    validate_key_part,
)

# mismatch kinds
OBJECT_WITHOUT_ROW = "object without row"
ROW_WITHOUT_OBJECT = "row without object"
METADATA_WITHOUT_NPY = "metadata without npy"
NPY_WITHOUT_METADATA = "npy without metadata"
SHA_MISMATCH = "sha mismatch"
MISSING_CAPTURE = "missing capture"
NOT_REQUESTED = "object of a receiver not requested"
FOREIGN_OBJECT = "object of another session"
STORED_OUTCOME_WITHOUT_OBJECT = "session_captures says stored, no object"
OBJECT_WITHOUT_OUTCOME = "object without a stored session_captures row"
OUTCOME_SHA_MISMATCH = "sha256 differs from session_captures"
STATUS_MISMATCH = "session status disagrees with what is stored"
SPECTRUM_WITHOUT_CAPTURE = "spectrum without capture"
UNFINISHED_UPLOAD = "unfinished multipart upload"
# left-overs of an interrupted write that hold no data of their own: --repair removes them
REPAIRABLE = (SPECTRUM_WITHOUT_CAPTURE, UNFINISHED_UPLOAD)
# sessions in these states have not recorded anything yet: nothing to compare
NOT_YET_RECORDED = ("requested",)


@dataclasses.dataclass(frozen=True)
class Mismatch:
    session_key: str
    receiver_id: str | None
    kind: str
    detail: str = ""
    object_key: str = ""  # what --repair removes (REPAIRABLE kinds)
    upload_id: str = ""

    def __str__(self) -> str:
        who = f"{self.session_key}/{self.receiver_id}" if self.receiver_id else self.session_key
        return f"{who}: {self.kind}" + (f" ({self.detail})" if self.detail else "")


def compare_session(session_key: str, requested_receivers: Iterable[str], object_keys: Iterable[str],
                    row_receivers: Iterable[str], read: Callable[[str], bytes | None],
                    uploads: Iterable[tuple[str, str]] = (),
                    outcomes: Mapping[str, Any] | None = None) -> list[Mismatch]:
    """Mismatches of one session. object_keys: every key under the session's prefix;
    row_receivers: receiver ids with a measurements row; read(key): the object's bytes or None;
    uploads: (key, upload id) of the multipart uploads under the session's prefix not completed;
    outcomes: the session's session_captures rows by receiver (CaptureOutcome). A session recorded
    before that table existed has none and is compared without them; with them, a receiver whose
    failure is recorded is consistent, and each stored object must match its 'stored' row."""
    outcomes = outcomes or {}
    requested, rows = set(requested_receivers), set(row_receivers)
    npy: set[str] = set()
    meta: set[str] = set()
    spectrum: set[str] = set()
    found: list[Mismatch] = []
    for key, upload_id in uploads:
        found.append(Mismatch(session_key, None, UNFINISHED_UPLOAD, f"{key}, upload {upload_id}",
                              object_key=key, upload_id=upload_id))
    for key in object_keys:
        try:
            key_session, receiver_id, kind = parse_object_key(key)
        except InvalidKeyError:
            continue  # session-level artefacts (e.g. a localization plot) are not per-receiver captures
        if key_session != session_key:
            found.append(Mismatch(session_key, receiver_id, FOREIGN_OBJECT, key))
            continue
        if kind == "iq":
            npy.add(receiver_id)
        elif kind == "metadata":
            meta.add(receiver_id)
        elif kind == "spectrum":
            spectrum.add(receiver_id)
    for rid in sorted(npy | meta | spectrum | rows | requested):
        has_npy, has_meta, has_row = rid in npy, rid in meta, rid in rows
        if has_meta and not has_npy:
            found.append(Mismatch(session_key, rid, METADATA_WITHOUT_NPY, metadata_object_key(session_key, rid)))
        if has_npy and not has_meta:
            found.append(Mismatch(session_key, rid, NPY_WITHOUT_METADATA, iq_object_key(session_key, rid)))
        if has_npy and has_meta:
            npy_key, meta_key = iq_object_key(session_key, rid), metadata_object_key(session_key, rid)
            data, metadata = read(npy_key), read(meta_key)
            if data is None or metadata is None:
                found.append(Mismatch(session_key, rid, METADATA_WITHOUT_NPY if data is None else NPY_WITHOUT_METADATA,
                                      "vanished while verifying"))
            else:
                try:
                    capture_from_stored(data, metadata, key_for_errors=npy_key)
                except ValueError as exc:  # CaptureIntegrityError names the key
                    found.append(Mismatch(session_key, rid, SHA_MISMATCH, str(exc)))
                outcome = outcomes.get(rid)
                if outcomes and (outcome is None or outcome.status != "stored"):
                    found.append(Mismatch(session_key, rid, OBJECT_WITHOUT_OUTCOME,
                                          "no row" if outcome is None else f"row says {outcome.status}"))
                elif outcome is not None and outcome.sha256 != metadata_sha256(metadata):
                    found.append(Mismatch(session_key, rid, OUTCOME_SHA_MISMATCH,
                                          f"row {outcome.sha256}, object {metadata_sha256(metadata)}"))
        if (has_npy or has_meta) and not has_row:
            found.append(Mismatch(session_key, rid, OBJECT_WITHOUT_ROW))
        if has_row and not has_npy:
            found.append(Mismatch(session_key, rid, ROW_WITHOUT_OBJECT, iq_object_key(session_key, rid)))
        recorded = outcomes.get(rid)
        if recorded is not None and recorded.status == "stored" and not has_npy:
            found.append(Mismatch(session_key, rid, STORED_OUTCOME_WITHOUT_OBJECT, iq_object_key(session_key, rid)))
        if (rid in requested and not has_npy and not has_meta and not has_row
                and not (recorded is not None and recorded.status == "failed")):
            found.append(Mismatch(session_key, rid, MISSING_CAPTURE))
        if rid not in requested and (has_npy or has_meta or has_row):
            found.append(Mismatch(session_key, rid, NOT_REQUESTED))
        if rid in spectrum and not has_npy:
            key = spectrum_object_key(session_key, rid)
            found.append(Mismatch(session_key, rid, SPECTRUM_WITHOUT_CAPTURE, key, object_key=key))
    return found


@dataclasses.dataclass
class VerifyReport:
    sessions_checked: list[str] = dataclasses.field(default_factory=list)
    sessions_skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    mismatches: list[Mismatch] = dataclasses.field(default_factory=list)
    repaired: list[Mismatch] = dataclasses.field(default_factory=list)
    not_repaired: dict[Mismatch, str] = dataclasses.field(default_factory=dict)  # -> why

    @property
    def ok(self) -> bool:
        return not self.mismatches


def _parse_time(text: str | None, name: str) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--{name}: {text!r} is not an ISO-8601 date-time") from None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def select_sessions(engine, keys: Iterable[str] = (), since: datetime | None = None,
                    until: datetime | None = None):
    """Session records to verify; unknown keys raise UnknownSessionError. Keys are validated
    before any SQL is built."""
    from heimdall_pipeline.db.sessions_repo import UnknownSessionError, get_session, list_sessions

    keys = [validate_key_part(key, field="session_key") for key in keys]
    if keys:
        records = []
        for key in keys:
            record = get_session(engine, key)
            if record is None:
                raise UnknownSessionError(key)
            records.append(record)
    else:
        records = [r for r in list_sessions(engine) if r.status != "archived"]
    return [r for r in records
            if (since is None or r.scheduled_for >= since) and (until is None or r.scheduled_for < until)]


def list_keys(client, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return keys


def list_unfinished_uploads(client, bucket: str, prefix: str) -> list[tuple[str, str]]:
    uploads: list[tuple[str, str]] = []
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
        uploads.extend((item["Key"], item["UploadId"]) for item in page.get("Uploads", []))
    return uploads


def verify_sessions(engine, client, bucket: str, records) -> VerifyReport:
    from heimdall_pipeline.db.captures_repo import outcomes_for_session
    from heimdall_pipeline.db.measurements_repo import measurements_for_session
    from heimdall_pipeline.db.sessions_repo import session_outcome
    from heimdall_pipeline.storage.object_store import error_code

    def read(key: str) -> bytes | None:
        try:
            return client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:  # noqa: BLE001 - only "missing" is None
            if error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise

    report = VerifyReport()
    for record in records:
        if record.status in NOT_YET_RECORDED:
            report.sessions_skipped[record.session_key] = f"status {record.status}: not recorded yet"
            continue
        rows = measurements_for_session(engine, record.session_key)
        prefix = session_prefix(record.session_key)
        report.mismatches += compare_session(record.session_key, record.receiver_ids, list_keys(client, bucket, prefix),
                                             [row.receiver_id for row in rows], read,
                                             list_unfinished_uploads(client, bucket, prefix),
                                             outcomes_for_session(engine, record.session_key))
        truth = record.archived_from_status if record.status == "archived" else record.status
        if truth in ("succeeded", "failed"):
            status, reason = session_outcome(engine, record)
            if status != truth:
                report.mismatches.append(Mismatch(record.session_key, None, STATUS_MISMATCH,
                                                  f"status {truth}, stored: {status} ({reason})"))
        report.sessions_checked.append(record.session_key)
    return report


def repair(client, bucket: str, report: VerifyReport, statuses: dict[str, str]) -> None:
    """Removes the REPAIRABLE left-overs of finished sessions (statuses: session key -> status) and
    moves them from report.mismatches to report.repaired. A spectrum PNG is deleted with a delete
    marker (the bucket is versioned: the picture stays recoverable)."""
    from heimdall_pipeline.db.sessions_repo import FINISHED_STATUSES

    left: list[Mismatch] = []
    for mismatch in report.mismatches:
        status = statuses.get(mismatch.session_key)
        if mismatch.kind not in REPAIRABLE:
            left.append(mismatch)
        elif status not in FINISHED_STATUSES:
            report.not_repaired[mismatch] = f"session is {status}: it may still be writing"
            left.append(mismatch)
        else:
            if mismatch.kind == UNFINISHED_UPLOAD:
                client.abort_multipart_upload(Bucket=bucket, Key=mismatch.object_key, UploadId=mismatch.upload_id)
            else:
                client.delete_object(Bucket=bucket, Key=mismatch.object_key)
            report.repaired.append(mismatch)
    report.mismatches = left


def format_report(report: VerifyReport) -> str:
    lines = [f"verified {len(report.sessions_checked)} session(s), skipped {len(report.sessions_skipped)}, "
             f"{len(report.mismatches)} mismatch(es)"]
    lines += [f"  skipped {key}: {why}" for key, why in report.sessions_skipped.items()]
    lines += [f"  REPAIRED {m}" for m in report.repaired]
    lines += [f"  MISMATCH {m}" + (f" [not repaired: {report.not_repaired[m]}]" if m in report.not_repaired else "")
              for m in report.mismatches]
    repairable = sum(m.kind in REPAIRABLE and m not in report.not_repaired for m in report.mismatches)
    if repairable:
        lines.append(f"  {repairable} of them (spectrum PNGs without capture, unfinished uploads) can be removed "
                     f"with: heimdall verify --repair")
    return "\n".join(lines)


def run(args) -> int:
    import sqlalchemy as sa
    from botocore.exceptions import BotoCoreError, ClientError

    from heimdall_pipeline.db.sessions_repo import UnknownSessionError
    from heimdall_pipeline.resources import build_resources
    from heimdall_pipeline.resources.iq_store import MissingBucketError, S3AccessDeniedError

    settings.load_embedded_env()
    endpoint, bucket = settings.setting("HEIMDALL_S3_ENDPOINT_URL"), settings.setting("HEIMDALL_S3_BUCKET")
    try:
        since, until = _parse_time(getattr(args, "since", None), "since"), _parse_time(getattr(args, "until", None), "until")
        # A short wait and few retries: an unreachable server is reported in seconds, not minutes.
        resources = build_resources(os.environ, s3={"connect_timeout_s": 5.0, "max_attempts": 2})
        engine = resources["database"].engine()
        client = resources["iq_store"].client()  # checks the server, the keys and the bucket, before any session
        records = select_sessions(engine, getattr(args, "sessions", None) or (), since, until)
        report = verify_sessions(engine, client, bucket, records)
        if getattr(args, "repair", False):
            repair(client, bucket, report, {record.session_key: record.status for record in records})
    except (ValueError, UnknownSessionError) as exc:  # InvalidKeyError is a ValueError
        print(f"heimdall verify: {exc}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError, S3AccessDeniedError, MissingBucketError, sa.exc.SQLAlchemyError) as exc:
        reason = outage_message(exc, s3_endpoint=endpoint, bucket=bucket) or f"S3 at {endpoint} failed: {exc}"
        print(f"heimdall verify: could not check: {reason}", file=sys.stderr)
        return 2
    print(format_report(report))
    return 0 if report.ok else 1
