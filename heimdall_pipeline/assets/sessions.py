"""session_summary: one session across all its receivers — who recorded it, who failed, and the
spread of the metrics. Cross-receiver analysis (localization) hangs here."""

import math
from dataclasses import dataclass

from dagster import AssetDep, AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, RunsFilter, asset

from heimdall_pipeline.partitions import captures_to_session, session_partitions
from heimdall_pipeline.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG, LAUNCH_TAG
from heimdall_pipeline.resources import HeimdallDatabase

RANGE_TAGS = (ASSET_PARTITION_RANGE_START_TAG, ASSET_PARTITION_RANGE_END_TAG)


def launch_runs(instance, launch_id: str | None) -> list:
    """The runs of a launch, the newest of each partition range (a re-executed run replaces the
    one it retried): those tagged with it, or the run whose id it is (a run started by hand in
    the UI is its own launch)."""
    if not launch_id:
        return []
    runs = instance.get_runs(RunsFilter(tags={LAUNCH_TAG: launch_id}))
    if not runs and instance.has_run(launch_id):
        runs = [instance.get_run_by_id(launch_id)]
    latest = {}
    for run in runs:  # newest first
        latest.setdefault(tuple(run.tags.get(tag) for tag in RANGE_TAGS), run)
    return list(latest.values())


def launch_ended(instance, launch_id: str | None) -> bool:
    """Whether the launch has runs and all of them have finished."""
    runs = launch_runs(instance, launch_id)
    return bool(runs) and all(run.is_finished for run in runs)


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


@dataclass(frozen=True)
class SessionReadout:
    """What the summary reads of one session: its measurements, the receivers without one and why,
    the captures' first-sample timing, and the status its outcomes give."""

    rows: list
    missing: list[str]
    reasons: dict[str, str]
    timing: dict
    status: str
    reason: str | None

    @property
    def detected(self) -> list:
        return [row for row in self.rows if row.signal_detected and row.snr_db is not None]


def read_session(engine, record) -> SessionReadout:
    """The summary's reads as plain calls (the asset calls it per session; so does the bench)."""
    from heimdall_pipeline.db.captures_repo import capture_timing, outcomes_for_session  # the database layer (SQLAlchemy) loads with the first run, not the code location
    from heimdall_pipeline.db.measurements_repo import measurements_for_session
    from heimdall_pipeline.db.sessions_repo import session_outcome

    rows = measurements_for_session(engine, record.session_key)
    measured = {row.receiver_id for row in rows}
    missing = [rid for rid in record.receiver_ids if rid not in measured]
    outcomes = outcomes_for_session(engine, record.session_key)
    reasons = {rid: outcomes[rid].reason if rid in outcomes else "no capture stored" for rid in missing}
    status, reason = session_outcome(engine, record)
    return SessionReadout(rows, missing, reasons, capture_timing(outcomes.values()), status, reason)


@asset(
    partitions_def=session_partitions,
    deps=[AssetDep("receiver_metrics", partition_mapping=captures_to_session)],
    backfill_policy=BackfillPolicy.single_run(),
    group_name="heimdall",
    kinds={"timescaledb"},
    description="Per session: receivers that succeeded or failed, and the spread of their metrics.",
)
def session_summary(context: AssetExecutionContext, database: HeimdallDatabase) -> MaterializeResult:
    from heimdall_pipeline.db.sessions_repo import FINISHED_STATUSES, InvalidTransitionError, get_session, transition

    engine = database.engine()
    totals = {"sessions": 0, "succeeded": 0, "failed": 0}
    for session_key in context.partition_keys:
        record = get_session(engine, session_key)
        if record is None:
            raise ValueError(f"session {session_key!r} is not in the sessions table")
        readout = read_session(engine, record)
        rows, missing, reasons, timing = readout.rows, readout.missing, readout.reasons, readout.timing
        status, reason, detected = readout.status, readout.reason, readout.detected
        snrs = [row.snr_db for row in detected]
        # A launched session is finished here only once every run of its launch has ended (another
        # block may still record, or another launch may hold it); the sensor's reconciler finishes
        # it otherwise. A finished one is recomputed (e.g. after a metrics backfill).
        if record.status in FINISHED_STATUSES or (record.status == "launched"
                                                  and launch_ended(context.instance, record.run_id)):
            try:
                transition(engine, session_key, status, reason=reason, if_run_id=record.run_id)
            except InvalidTransitionError as exc:
                context.log.warning(f"session {session_key}: status left as it is: {exc}")
        totals["sessions"] += 1
        totals[status] += 1
        table = "\n".join(
            f"| {row.receiver_id} | {'%.1f' % row.snr_db if row.snr_db is not None else 'no signal'} | "
            f"{row.power_text('signal')} | {row.power_text('noise')} | "
            f"{row.frequency_offset_hz if row.frequency_offset_hz is not None else float('nan'):.2f} |"
            for row in sorted(rows, key=lambda r: r.receiver_id))
        failures = "\n".join(f"- **{rid}**: {reasons[rid]}" for rid in missing)
        context.add_asset_metadata({
            "status": status,
            "receivers_requested": len(record.receiver_ids),
            "receivers_measured": len(rows),
            "receivers_failed": MetadataValue.json(reasons),
            "signal_detected_at": len(detected),
            "snr_db_min": min(snrs) if snrs else math.nan,
            "snr_db_max": max(snrs) if snrs else math.nan,
            # first-sample times as the sources measured them (GNSS where they have it)
            "first_sample_spread_ms": _or_nan(timing["first_sample_spread_ms"]),
            "captures_common_fraction": _or_nan(timing["common_fraction"]),
            "summary": MetadataValue.md(
                "| receiver | SNR dB | signal power | noise power | offset Hz |\n|---|---|---|---|---|\n"
                + table + ("\n\n**Failed receivers**\n" + failures if missing else "")),
        }, partition_key=session_key)
        context.log.info(f"session {session_key}: {status}, {len(rows)}/{len(record.receiver_ids)} receivers measured"
                         + (f"; failed: {', '.join(missing)}" if missing else "")
                         + (f"; first-sample spread {timing['first_sample_spread_ms']:.3f} ms"
                            if timing["first_sample_spread_ms"] is not None else ""))
    return MaterializeResult(metadata=totals)
