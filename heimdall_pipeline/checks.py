"""Asset checks: integrity of stored IQ and plausibility of the metrics rows.

Checks evaluate every partition of the run that materialized the asset. Dagster records one
evaluation per run: per partition for a single-partition run, one for the whole range in a
session or backfill run, with the failing partition keys named in the metadata.
"""

import math
from collections import defaultdict
from collections.abc import Sequence
from functools import partial

import numpy as np
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from heimdall_pipeline.assets.acquisition import raw_iq
from heimdall_pipeline.assets.metrics import receiver_metrics
from heimdall_pipeline.partitions import capture_key, capture_partitions, split_capture_key
from heimdall_pipeline.resources import HeimdallDatabase
from heimdall_pipeline.resources.iq_store import IQStore
from heimdall_pipeline.storage.captures import has_capture, load_capture, read_ahead
from heimdall_pipeline.storage.iq_format import stored_timing
from heimdall_pipeline.storage.layout import metadata_object_key
from heimdall_pipeline.dsp.gnss_quality import GnssQuality, gnss_quality
from heimdall_pipeline.capture import UNTIMED_IMPORT_DETAIL

IQ_FRAME_SAMPLES = 512  # one KiwiSDR frame: the tolerance on the sample count
SNR_BOUNDS_DB = (-20.0, 80.0)


def run_partitions(context: AssetCheckExecutionContext) -> dict[str, list[str]]:
    """Receiver ids of this run's partitions, by session."""
    by_session: dict[str, list[str]] = defaultdict(list)
    for key in context.op_execution_context.partition_keys:
        session_key, receiver_id = split_capture_key(key)
        by_session[session_key].append(receiver_id)
    return by_session


def capture_problems(capture, record) -> list[str]:
    problems = []
    expected_dtype = np.float32 if capture.is_audio else np.complex64  # audio: real samples
    if capture.samples.dtype != expected_dtype:
        problems.append(f"dtype {capture.samples.dtype}, expected {np.dtype(expected_dtype).name}")
    if not np.isfinite(capture.samples).all():
        problems.append("non-finite samples")
    # a recording keeps its file's length; others are as long as the session
    expected = capture.details.get("file_samples") or record.duration_s * capture.sample_rate_hz
    if abs(len(capture.samples) - expected) > IQ_FRAME_SAMPLES:
        problems.append(f"{len(capture.samples)} samples, expected {expected:.0f} ± {IQ_FRAME_SAMPLES}")
    return problems


def integrity_problems(iq_store: IQStore, record, receiver_ids: Sequence[str]) -> tuple[dict[str, str], int]:
    """Problems of each stored capture of one session (object, SHA-256, dtype, finiteness,
    sample count) by partition key, and how many captures were verified."""
    problems: dict[str, str] = {}
    verified = 0

    def load(key: str):
        try:
            return load_capture(iq_store, *split_capture_key(key))
        except ValueError as exc:  # CaptureIntegrityError names the object key
            return exc

    keys = [capture_key(record.session_key, rid) for rid in receiver_ids]
    for key, capture in read_ahead(load, keys, iq_store.read_ahead):
        if isinstance(capture, ValueError):
            problems[key] = str(capture)
            continue
        if capture is None:
            continue  # no capture: reported by raw_iq_captured
        found = capture_problems(capture, record)
        if found:
            problems[key] = f"{iq_store.bucket}/{record.session_key}/{split_capture_key(key)[1]}: " + "; ".join(found)
        verified += 1
    return problems, verified


def missing_captures(iq_store: IQStore, record, receiver_ids: Sequence[str]) -> list[str]:
    """Partition keys of requested receivers of one session without a stored capture."""
    return [capture_key(record.session_key, rid) for rid in receiver_ids
            if rid in record.receiver_ids and not has_capture(iq_store, record.session_key, rid)]


def row_problems(iq_store: IQStore, engine, session_key: str, receiver_ids: Sequence[str]) -> dict[str, str]:
    """Missing or implausible measurements rows of one session, by partition key."""
    from heimdall_pipeline.db.measurements_repo import measurements_for_session  # the database layer (SQLAlchemy) loads with the first run, not the code location

    problems: dict[str, str] = {}
    rows = {row.receiver_id: row for row in measurements_for_session(engine, session_key)}
    for rid in receiver_ids:
        key = capture_key(session_key, rid)
        row = rows.get(rid)
        if row is None:
            if has_capture(iq_store, session_key, rid):
                problems[key] = "capture stored but no measurements row"
            continue
        values = row.required_power_figures()
        if row.signal_detected:
            values.update(snr_db=row.snr_db, frequency_offset_hz=row.frequency_offset_hz)
        bad = [name for name, value in values.items() if value is None or not math.isfinite(value)]
        if row.signal_detected and row.snr_db is not None and not SNR_BOUNDS_DB[0] <= row.snr_db <= SNR_BOUNDS_DB[1]:
            bad.append(f"snr_db {row.snr_db:.1f} outside {SNR_BOUNDS_DB}")
        half_rate = row.sample_rate_khz * 1e3 / 2
        if row.frequency_offset_hz is not None and not abs(row.frequency_offset_hz) < half_rate:
            bad.append(f"|frequency_offset_hz| {abs(row.frequency_offset_hz):.1f} ≥ rate/2 {half_rate:.1f}")
        if bad:
            problems[key] = ", ".join(bad)
    return problems


@asset_check(asset=raw_iq, blocking=True, partitions_def=capture_partitions,
             description="Object and metadata exist, SHA-256 matches, complex64 (float32 for audio), finite, sample count = rate × duration.")
def raw_iq_integrity(context: AssetCheckExecutionContext, iq_store: IQStore,
                     database: HeimdallDatabase) -> AssetCheckResult:
    from heimdall_pipeline.db.sessions_repo import get_session  # the database layer (SQLAlchemy) loads with the first run, not the code location

    engine = database.engine()
    problems: dict[str, str] = {}
    verified = 0
    for session_key, receiver_ids in run_partitions(context).items():
        found, count = integrity_problems(iq_store, get_session(engine, session_key), receiver_ids)
        problems.update(found)
        verified += count
    return AssetCheckResult(passed=not problems, metadata={
        "verified_objects": verified, "problems": MetadataValue.json(problems)},
        description="; ".join(problems.values())[:1000] or None)


@asset_check(asset=raw_iq, partitions_def=capture_partitions,
             description="Every receiver requested for the session has a stored capture. Dagster marks "
                         "every partition of a run's range materialized, a failed capture's too "
                         "(dagster-io/dagster#17836): this check fails (ERROR) naming each failed "
                         "receiver and its reason from session_captures.")
def raw_iq_captured(context: AssetCheckExecutionContext, iq_store: IQStore,
                    database: HeimdallDatabase) -> AssetCheckResult:
    from heimdall_pipeline.db.captures_repo import outcomes_for_session  # the database layer loads with the first run, not the code location
    from heimdall_pipeline.db.sessions_repo import get_session

    engine = database.engine()
    reasons: dict[str, str] = {}
    for session_key, receiver_ids in run_partitions(context).items():
        outcomes = outcomes_for_session(engine, session_key)
        for key in missing_captures(iq_store, get_session(engine, session_key), receiver_ids):
            rid = split_capture_key(key)[1]
            reasons[key] = outcomes[rid].reason if rid in outcomes else "no capture stored"
    return AssetCheckResult(passed=not reasons, severity=AssetCheckSeverity.ERROR,
                            metadata={"missing_captures": MetadataValue.json(list(reasons)),
                                      "reasons": MetadataValue.json(reasons)},
                            description=("no capture from " + "; ".join(f"{k}: {v}" for k, v in reasons.items()))[:1000]
                            if reasons else None)


@asset_check(asset=receiver_metrics, partitions_def=capture_partitions,
             description="A row per captured partition, values finite and within physical bounds.")
def receiver_metrics_rows(context: AssetCheckExecutionContext, iq_store: IQStore,
                          database: HeimdallDatabase) -> AssetCheckResult:
    engine = database.engine()
    problems: dict[str, str] = {}
    for session_key, receiver_ids in run_partitions(context).items():
        problems.update(row_problems(iq_store, engine, session_key, receiver_ids))
    return AssetCheckResult(passed=not problems, metadata={"problems": MetadataValue.json(problems)},
                            description="; ".join(f"{k}: {v}" for k, v in problems.items())[:1000] or None)


def stored_gnss_quality(iq_store: IQStore, session_key: str, receiver_id: str) -> GnssQuality | None:
    """The GNSS quality of one stored capture from its SigMF metadata (None without a capture)."""
    import json

    body = iq_store.get(metadata_object_key(session_key, receiver_id))
    if body is None:
        return None
    stamps, model, untimed_reason, samples, rate, details = stored_timing(json.loads(body))
    return gnss_quality(stamps, model, untimed_reason, samples, rate,
                        imported_untimed=bool(details.get(UNTIMED_IMPORT_DETAIL)))


@asset_check(asset=raw_iq, partitions_def=capture_partitions,
             description="GNSS timing of each capture (figures from its stored frame tags and time model): fresh "
                         "fixes, stale-frame fraction, rejected timestamps (all-zero, jumps of hours, outliers), "
                         "longest gap between fixes, timing rms, sample-rate spread. ERROR: TDoA leaves the capture "
                         "out by name (untimed, or a figure beyond its error threshold); WARN: kept, figures shown "
                         "(also a file imported --untimed); a capture shorter than 1.5 s is no use to TDoA and passes "
                         "untimed. Thresholds: docs/tdoa.md.")
def raw_iq_gnss_quality(context: AssetCheckExecutionContext, iq_store: IQStore) -> AssetCheckResult:
    figures: dict[str, dict] = {}
    for session_key, receiver_ids in run_partitions(context).items():
        # the next metadata objects download while one is graded
        for rid, quality in read_ahead(partial(stored_gnss_quality, iq_store, session_key), receiver_ids,
                                       iq_store.read_ahead):
            if quality is not None:
                figures[capture_key(session_key, rid)] = quality.to_json()
    worst = {"error": [], "warn": []}
    for key, q in figures.items():
        if q["severity"] in worst:
            worst[q["severity"]].append(f"{key}: {'; '.join(q['problems'])}")
    severity = AssetCheckSeverity.ERROR if worst["error"] else AssetCheckSeverity.WARN
    summary = {key: {k: q[k] for k in ("severity", "fresh_fixes", "stale_frame_fraction", "rejected_timestamps",
                                        "longest_fix_gap_s", "timing_rms_ns", "rate_spread_ppm")}
               for key, q in figures.items()}
    return AssetCheckResult(
        passed=not (worst["error"] or worst["warn"]), severity=severity,
        metadata={"captures": len(figures), "errors": len(worst["error"]), "warnings": len(worst["warn"]),
                  "figures": MetadataValue.json(summary), "problems": MetadataValue.json(worst)},
        description=("; ".join(worst["error"] + worst["warn"]))[:1000] or None)
