"""session_summary: one session across all its receivers — who recorded it, who failed, and the
spread of the metrics. Cross-receiver analysis (localization) hangs here."""

import math

from dagster import (
    AssetDep, AssetExecutionContext, AssetKey, AssetRecordsFilter, AutomationCondition, BackfillPolicy,
    MaterializeResult, MetadataValue, MultiToSingleDimensionPartitionMapping, asset,
)

from heimdall_pipeline.partitions import partition_key_for, session_partitions
from heimdall_pipeline.resources import HeimdallDatabase

per_session = MultiToSingleDimensionPartitionMapping(partition_dimension_name="session")


def capture_failures(context: AssetExecutionContext, session_key: str, receiver_ids) -> dict[str, str]:
    """Why requested receivers have no capture, from raw_iq's latest materialization metadata."""
    keys = [str(partition_key_for(session_key, rid)) for rid in receiver_ids]
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("raw_iq"), asset_partitions=keys), limit=len(keys) * 4).records
    reasons: dict[str, str] = {}
    for record in records:  # newest first
        materialization = record.asset_materialization
        rid = materialization.partition.split("|")[0]
        if rid in reasons:
            continue
        metadata = materialization.metadata
        status = metadata.get("capture_status")
        reasons[rid] = metadata["error"].value if status and status.value == "failed" and "error" in metadata else ""
    return {rid: reason for rid, reason in reasons.items() if reason}


@asset(
    partitions_def=session_partitions,
    deps=[AssetDep("receiver_metrics", partition_mapping=per_session)],
    backfill_policy=BackfillPolicy.single_run(),
    automation_condition=AutomationCondition.eager(),
    group_name="heimdall",
    kinds={"timescaledb"},
    description="Per session: receivers that succeeded or failed, and the spread of their metrics.",
)
def session_summary(context: AssetExecutionContext, database: HeimdallDatabase) -> MaterializeResult:
    from heimdall_pipeline.db.measurements_repo import measurements_for_session  # the database layer (SQLAlchemy) loads with the first run, not the code location
    from heimdall_pipeline.db.sessions_repo import get_session, set_status

    engine = database.engine()
    totals = {"sessions": 0, "succeeded": 0, "failed": 0}
    for session_key in context.partition_keys:
        record = get_session(engine, session_key)
        if record is None:
            raise ValueError(f"session {session_key!r} is not in the sessions table")
        rows = measurements_for_session(engine, session_key)
        measured = {row.receiver_id for row in rows}
        missing = [rid for rid in record.receiver_ids if rid not in measured]
        reasons = capture_failures(context, session_key, missing) if missing else {}
        detected = [row for row in rows if row.signal_detected and row.snr_db is not None]
        snrs = [row.snr_db for row in detected]
        status = "succeeded" if rows else "failed"
        set_status(engine, session_key, status)
        totals["sessions"] += 1
        totals[status] += 1
        table = "\n".join(
            f"| {row.receiver_id} | {'%.1f' % row.snr_db if row.snr_db is not None else 'no signal'} | "
            f"{row.power_text('signal')} | {row.power_text('noise')} | "
            f"{row.frequency_offset_hz if row.frequency_offset_hz is not None else float('nan'):.2f} |"
            for row in sorted(rows, key=lambda r: r.receiver_id))
        failures = "\n".join(f"- **{rid}**: {reasons.get(rid) or 'no capture stored'}" for rid in missing)
        context.add_asset_metadata({
            "status": status,
            "receivers_requested": len(record.receiver_ids),
            "receivers_measured": len(rows),
            "receivers_failed": MetadataValue.json({rid: reasons.get(rid, "no capture stored") for rid in missing}),
            "signal_detected_at": len(detected),
            "snr_db_min": min(snrs) if snrs else math.nan,
            "snr_db_max": max(snrs) if snrs else math.nan,
            "summary": MetadataValue.md(
                "| receiver | SNR dB | signal power | noise power | offset Hz |\n|---|---|---|---|---|\n"
                + table + ("\n\n**Failed receivers**\n" + failures if missing else "")),
        }, partition_key=session_key)
        context.log.info(f"session {session_key}: {status}, {len(rows)}/{len(record.receiver_ids)} receivers measured"
                         + (f"; failed: {', '.join(missing)}" if missing else ""))
    return MaterializeResult(metadata=totals)
