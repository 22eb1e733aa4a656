"""Session partition lifecycle: archive old sessions out of the Dagster instance, restore them.
The logic only: `heimdall session archive|restore` (cli.py) and the archive job
(assets/lifecycle.py) call it and report its results.

Archive (`heimdall session archive --older-than-days N`, the `archive_sessions_job`): finished
sessions (succeeded / failed) scheduled more than N days ago lose their `sessions` dynamic
partition and their `captures` partitions — so every raw_iq / receiver_metrics / session_summary
partition of that session — and are marked 'archived' in the sessions table. NOTHING is deleted: the IQ objects stay in S3,
the rows stay in TimescaleDB, and Dagster's event log keeps the materialization events
(`delete_dynamic_partition` only removes the key from the dynamic partitions table). A session
with a run that is not finished (queued, starting, started, canceling...) is never archived.

Restore (`heimdall session restore KEY...`): adds the partitions back (a session's capture keys
together, partitions.add_session_partitions). It also brings sessions stored before capture
partitions existed (keys "receiver|session" of the sessions × receivers product) into them. Where the event log still
holds the materializations (same instance), re-adding the key is enough: Dagster computes the
status from those events again. Where it does not (a new instance, a wiped event log, a session
recorded elsewhere), the status is re-reported from what is stored, through
`report_runless_asset_event(AssetMaterialization(...))`:
- raw_iq: per requested receiver, its outcome from session_captures: a failed capture is
  re-reported with its recorded cause; a stored one is read back from S3 and its SHA-256 verified
  (storage/captures.load_capture) against the object's metadata and the recorded SHA-256 (sessions recorded
  before session_captures existed: against the metadata only); a damaged or missing capture is
  NOT reported and restore returns problems;
- receiver_metrics: per receiver with a measurements row;
- session_summary: once, with the session's status before archiving.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import timedelta
from typing import Iterable

import sqlalchemy as sa
from dagster import AssetKey, AssetMaterialization, AssetRecordsFilter, DagsterRunStatus, RunsFilter

from heimdall_pipeline.db.captures_repo import outcomes_for_session
from heimdall_pipeline.db.measurements_repo import measurements_for_session
from heimdall_pipeline.db.sessions_repo import (
    FINISHED_STATUSES, UnknownSessionError, get_session, list_sessions, mark_archived, mark_restored,
)
from heimdall_pipeline.partitions import (
    CAPTURE_KEY_SEPARATOR, add_session_partitions, capture_key, capture_partitions, remove_session_partitions,
    session_partitions, split_capture_key,
)
from heimdall_pipeline.storage.captures import has_capture, load_capture
from heimdall_pipeline.storage.iq_format import CaptureIntegrityError, metadata_sha256
from heimdall_pipeline.storage.layout import iq_object_key, metadata_object_key
from heimdall_pipeline.tags import (
    ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG, PARTITION_NAME_TAG, SESSION_TAG,
)

DEFAULT_ARCHIVE_AFTER_DAYS = 90.0


def archive_after_days() -> float:
    """The archive window: HEIMDALL_ARCHIVE_AFTER_DAYS (default 90 days)."""
    value = os.environ.get("HEIMDALL_ARCHIVE_AFTER_DAYS", "").strip()
    days = float(value) if value else DEFAULT_ARCHIVE_AFTER_DAYS
    if days < 0:
        raise ValueError(f"HEIMDALL_ARCHIVE_AFTER_DAYS={value!r}: the window must be >= 0 days")
    return days


@dataclasses.dataclass
class ArchiveResult:
    archived: list[str] = dataclasses.field(default_factory=list)
    skipped_in_progress: list[str] = dataclasses.field(default_factory=list)
    dry_run: bool = False


@dataclasses.dataclass
class RestoreResult:
    restored: list[str] = dataclasses.field(default_factory=list)
    from_event_log: dict[str, int] = dataclasses.field(default_factory=dict)   # session -> events kept
    reported: dict[str, int] = dataclasses.field(default_factory=dict)         # session -> events re-reported
    problems: dict[str, str] = dataclasses.field(default_factory=dict)         # partition -> why not restored
    moved: dict[str, int] = dataclasses.field(default_factory=dict)            # session -> legacy events moved


# ---------------------------------------------------------------------------------------------
# Runs in progress
# ---------------------------------------------------------------------------------------------
def busy_sessions(instance) -> set[str]:
    """Session keys touched by any run that is not finished: the `heimdall/session` tag of session
    runs, the `dagster/partition` tag of single-partition runs and the sessions named by the
    partition range tags of range runs (backfills)."""
    # Runs that may still write: every status but the three final ones (and MANAGED, runs
    # Dagster does not execute itself), as Dagster's own not-finished list has it.
    final = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED, DagsterRunStatus.MANAGED}
    unfinished = [status for status in DagsterRunStatus if status not in final]

    def session_of(key: str) -> str:  # a capture key or a session key
        return split_capture_key(key)[0] if CAPTURE_KEY_SEPARATOR in key else key

    busy: set[str] = set()
    ordered: dict[str, list[str]] = {}
    for record in instance.get_run_records(RunsFilter(statuses=unfinished)):
        tags = record.dagster_run.tags
        if SESSION_TAG in tags:
            busy.add(tags[SESSION_TAG])
        if PARTITION_NAME_TAG in tags:
            busy.add(session_of(tags[PARTITION_NAME_TAG]))
        start, end = tags.get(ASSET_PARTITION_RANGE_START_TAG), tags.get(ASSET_PARTITION_RANGE_END_TAG)
        if start and end:
            busy.update((session_of(start), session_of(end)))
            if session_of(start) != session_of(end):  # a range over sessions: every key between them in partition order
                name = capture_partitions.name if CAPTURE_KEY_SEPARATOR in start else session_partitions.name
                keys = ordered.setdefault(name, list(instance.get_dynamic_partitions(name)))
                if start in keys and end in keys:
                    i, j = sorted((keys.index(start), keys.index(end)))
                    busy.update(session_of(key) for key in keys[i:j + 1])
    return busy


# ---------------------------------------------------------------------------------------------
# Archive
# ---------------------------------------------------------------------------------------------
def archive_sessions(instance, engine: sa.Engine, older_than_days: float, *, dry_run: bool = False,
                     log=print) -> ArchiveResult:
    """Archives finished sessions scheduled more than `older_than_days` ago (see module doc).

    Also finishes an earlier archive that was interrupted between marking a session archived and
    removing its partition."""
    result = ArchiveResult(dry_run=dry_run)
    window = timedelta(days=older_than_days)
    present = set(instance.get_dynamic_partitions(session_partitions.name))
    candidates = [r.session_key for r in list_sessions(engine, status=FINISHED_STATUSES, older_than=window)]
    leftovers = [r.session_key for r in list_sessions(engine, status="archived") if r.session_key in present]
    if not candidates and not leftovers:
        return result
    busy = busy_sessions(instance)
    result.skipped_in_progress = sorted(k for k in set(candidates) | set(leftovers) if k in busy)
    keys = [k for k in dict.fromkeys(candidates + leftovers) if k not in busy]
    if dry_run:
        result.archived = keys
        return result
    # Sessions table first: an 'archived' session is never launched again by the sensor; then
    # the partitions (a crash in between is finished by the next archive, see `leftovers`).
    mark_archived(engine, keys)
    receivers = {r.session_key: r.receiver_ids for r in list_sessions(engine, status="archived")}
    for key in keys:
        remove_session_partitions(instance, key, receivers.get(key, ()))
    result.archived = keys
    return result


# ---------------------------------------------------------------------------------------------
# Restore
# ---------------------------------------------------------------------------------------------
def _latest_materializations(instance, asset: str, keys: list[str]) -> dict:
    """The newest materialization record of each of these partition keys that has one."""
    found: dict = {}
    cursor = None
    while keys:
        result = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=keys), limit=1000, cursor=cursor)
        for record in result.records:  # newest first
            if record.partition_key:
                found.setdefault(record.partition_key, record)
        if not result.has_more or set(found) >= set(keys):
            break
        cursor = result.cursor
    return found


def _materialized(instance, asset: str, keys: list[str]) -> set[str]:
    """Which of these partition keys have a materialization in the event log."""
    return set(_latest_materializations(instance, asset, keys))


def legacy_capture_key(session_key: str, receiver_id: str) -> str:
    """The raw_iq / receiver_metrics key of a capture before capture partitions existed (main
    4ef43da: sessions × receivers, "receiver|session")."""
    return f"{receiver_id}|{session_key}"


def _move_legacy_materializations(instance, asset: str, session_key: str, receiver_ids: Iterable[str],
                                  kept: set[str]) -> set[str]:
    """Re-reports, under each capture key without a materialization, the newest one its legacy
    key has: the same metadata, plus the legacy key and the run that made it (Dagster cannot move
    an event to another partition; the old events stay where they are). Returns the keys done."""

    legacy = {legacy_capture_key(session_key, rid): capture_key(session_key, rid)
              for rid in receiver_ids if capture_key(session_key, rid) not in kept}
    moved = set()
    for old_key, record in _latest_materializations(instance, asset, list(legacy)).items():
        materialization = record.asset_materialization
        instance.report_runless_asset_event(AssetMaterialization(
            asset_key=asset, partition=legacy[old_key],
            metadata={**(materialization.metadata if materialization else {}), "migrated_from_partition": old_key,
                      "migrated_from_run": record.run_id},
            description=f"moved from partition {old_key} (sessions × receivers, before capture partitions)"))
        moved.add(legacy[old_key])
    return moved


def _report(instance, asset: str, partition, metadata: dict) -> None:
    instance.report_runless_asset_event(AssetMaterialization(
        asset_key=asset, partition=partition, metadata={"restored": True, **metadata},
        description="re-reported by `heimdall session restore` from what is stored"))


def _stored_sha256(iq_store, session_key: str, receiver_id: str) -> str | None:
    """The SHA-256 recorded in the capture's SigMF metadata (load_capture has just verified it)."""
    return metadata_sha256(iq_store.get(metadata_object_key(session_key, receiver_id)))


def restore_sessions(instance, engine: sa.Engine, keys: Iterable[str], iq_store=None, *, log=print) -> RestoreResult:
    """Brings archived sessions back (see module doc). `iq_store` (an IQStore) is needed only when
    the event log no longer holds a session's materializations."""
    keys = list(dict.fromkeys(keys))
    records = {}
    for key in keys:
        record = get_session(engine, key)
        if record is None:
            raise UnknownSessionError(key)
        records[key] = record
    result = RestoreResult()
    _ranges, unordered = add_session_partitions(instance, {key: record.receiver_ids for key, record in records.items()})
    if unordered:
        raise RuntimeError("; ".join(unordered.values()))

    for key in keys:
        record = records[key]
        was = record.archived_from_status or record.status
        # Only the receivers the session requested have partitions worth reporting.
        pkeys = {rid: capture_key(key, rid) for rid in record.receiver_ids}
        kept_raw = _materialized(instance, "raw_iq", list(pkeys.values()))
        kept_metrics = _materialized(instance, "receiver_metrics", list(pkeys.values()))
        moved_raw = _move_legacy_materializations(instance, "raw_iq", key, record.receiver_ids, kept_raw)
        moved_metrics = _move_legacy_materializations(instance, "receiver_metrics", key, record.receiver_ids,
                                                      kept_metrics)
        result.moved[key] = len(moved_raw) + len(moved_metrics)
        kept_raw |= moved_raw
        kept_metrics |= moved_metrics
        kept_summary = _materialized(instance, "session_summary", [key])
        result.from_event_log[key] = len(kept_raw) + len(kept_metrics) + len(kept_summary)
        reported = 0
        ran = was in FINISHED_STATUSES  # the session's run materialized all its partitions
        rows = {row.receiver_id: row for row in measurements_for_session(engine, key)} if ran else {}
        outcomes = outcomes_for_session(engine, key) if ran else {}
        for rid, pkey in pkeys.items():
            partition = pkey
            outcome = outcomes.get(rid)
            if ran and pkey not in kept_raw:
                if outcome is not None and outcome.status == "failed":  # the recorded cause, no S3 read
                    _report(instance, "raw_iq", partition, {"capture_status": "failed", "error": outcome.reason,
                                                            "restored_from": "session_captures"})
                    reported += 1
                    continue
                if iq_store is None:
                    raise ValueError(f"session {key}: the event log has no raw_iq materialization for {pkey}; "
                                     "restoring from S3 needs the IQ store")
                try:
                    capture = load_capture(iq_store, key, rid)  # SHA-256 verified
                    sha256 = _stored_sha256(iq_store, key, rid) if capture is not None else None
                    if outcome is not None and outcome.status == "stored" and outcome.sha256 != sha256:
                        raise CaptureIntegrityError(f"s3://{iq_store.bucket}/{iq_object_key(key, rid)}: "
                                             + ("missing" if capture is None else f"sha256 {sha256}")
                                             + f", but session_captures recorded {outcome.sha256}")
                except CaptureIntegrityError as exc:
                    result.problems[pkey] = str(exc)
                    log(f"session {key}: {pkey} NOT restored: {exc}")
                    continue
                if capture is not None:
                    _report(instance, "raw_iq", partition, {
                        "capture_status": "stored", "restored_from": "s3",
                        "s3_key": f"s3://{iq_store.bucket}/{iq_object_key(key, rid)}", "sha256": sha256,
                        "samples": len(capture.samples), "sample_rate_hz": float(capture.sample_rate_hz)})
                else:
                    _report(instance, "raw_iq", partition, {
                        "capture_status": "failed", "restored_from": "s3",
                        "error": "no capture stored for this receiver (restored)"})
                reported += 1
            if ran and pkey not in kept_metrics and pkey not in result.problems:
                row = rows.get(rid)
                if row is not None:
                    metadata = {"metrics_status": "stored", "restored_from": "timescaledb",
                                "snr_db": row.snr_db if row.snr_db is not None else float("nan"),
                                "signal_detected": bool(row.signal_detected)}
                elif iq_store is not None and has_capture(iq_store, key, rid):
                    # Captured but no row (e.g. dropped by the measurements retention policy):
                    # left missing, so a receiver_metrics backfill recomputes it from S3.
                    log(f"session {key}: {pkey} has a capture but no measurements row; "
                        "backfill receiver_metrics to recompute it")
                    continue
                else:
                    metadata = {"metrics_status": "no capture", "restored_from": "timescaledb"}
                _report(instance, "receiver_metrics", partition, metadata)
                reported += 1
        if ran and key not in kept_summary:
            _report(instance, "session_summary", key, {
                "status": was, "receivers_requested": len(record.receiver_ids),
                "receivers_measured": len(rows), "restored_from": "timescaledb"})
            reported += 1
        result.reported[key] = reported
        result.restored.append(key)
    mark_restored(engine, keys)
    return result


# ---------------------------------------------------------------------------------------------
# Upgrade: sessions stored before capture partitions
# ---------------------------------------------------------------------------------------------
LEGACY_RECEIVER_PARTITIONS = "receivers"  # the receivers dimension of sessions × receivers (main 4ef43da)


def upgrade_partitions(instance, engine: sa.Engine, iq_store=None, *, log=print) -> RestoreResult | None:
    """Brings the finished sessions of an instance made before capture partitions into them (run
    by `heimdall db migrate`): their capture partitions are added and their raw_iq /
    receiver_metrics materializations moved to them (restore_sessions). Once every session is
    done, the old receivers dimension is removed. None when there is nothing to upgrade."""
    legacy = instance.get_dynamic_partitions(LEGACY_RECEIVER_PARTITIONS)
    if not legacy:
        return None
    finished = [r.session_key for r in list_sessions(engine, status=FINISHED_STATUSES)]
    result = restore_sessions(instance, engine, finished, iq_store, log=log) if finished else RestoreResult()
    launched = [r.session_key for r in list_sessions(engine, status="launched")]
    if launched:
        log(f"left for the next `heimdall db migrate`: {len(launched)} session(s) still launched "
            f"({', '.join(launched[:5])}{' ...' if len(launched) > 5 else ''})")
    elif not result.problems:
        for receiver_id in legacy:
            instance.delete_dynamic_partition(LEGACY_RECEIVER_PARTITIONS, receiver_id)
    return result
