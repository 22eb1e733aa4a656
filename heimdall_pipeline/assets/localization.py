"""session_localization: where the transmitter of a session is, by time difference of arrival when
at least three receivers hold timed captures of the same signal, from their received powers
otherwise."""

import dataclasses
import json
from typing import TYPE_CHECKING

import numpy as np
from dagster import AssetDep, AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, asset

from heimdall_pipeline.assets.pictures import shown_picture
from heimdall_pipeline.partitions import captures_to_session, session_partitions
from heimdall_pipeline.rss import DEFAULT_SHADOWING_SIGMA_DB, LocalizationResult, PowerObservation, localize
from heimdall_pipeline.recordings.bucket import read_upload
from heimdall_pipeline.recordings.plan import POSITIONS_FILE
from heimdall_pipeline.resources import HeimdallDatabase
from heimdall_pipeline.resources.iq_store import IQStore
from heimdall_pipeline.storage.captures import load_capture
from heimdall_pipeline.storage.layout import localization_object_key

if TYPE_CHECKING:
    from heimdall_pipeline.tdoa import TdoaResult, TimedCapture

# The TDoA chain (scipy) and the database layer (SQLAlchemy) load with the first run, not with the
# code location.

SIMULATED_KIND = "simulated"
# Receivers without GNSS-disciplined tuning (and the simulator's +-0.5 ppm oscillators) may sit up
# to 1 ppm of the centre frequency apart: TDoA searches that far for each pair's tuning offset.
TUNING_SPREAD_PPM = 1.0
# TDoA holds each capture several times over (stored, resampled, band-limited windows): beyond this
# many samples per receiver (~6 min at 12 kS/s, 32 MiB as complex64) a session is left to the
# received-power estimate rather than risk the run's memory.
MAX_TDOA_SAMPLES = 2**22


def observations_of(rows, registry) -> tuple[list[PowerObservation], list[str]]:
    """Received-power observations from the rows with dBm figures (measured in dBm, or dBFS with a
    calibration), and the receivers left out for having only uncalibrated dBFS figures (an audio
    capture's power figure is the receiver's S-meter, in uncalibrated dBFS: named as such).
    Detections give a received power; non-detections an upper bound (their noise power)."""
    observations, uncalibrated = [], []
    for row in rows:
        if row.noise_power_dbm is None:
            # an audio row's power is its S-meter's (never the audio level, which follows the AGC)
            uncalibrated.append(row.receiver_id if row.capture_signal != "audio" else
                                f"{row.receiver_id} (audio: " + ("S-meter dBFS" if row.smeter_dbfs is not None
                                                                 else "no S-meter reading") + ")")
            continue
        receiver = registry[row.receiver_id]
        if row.signal_detected and row.signal_power_dbm is not None:
            observations.append(PowerObservation.detection(
                receiver.id, receiver.latitude, receiver.longitude, row.frequency_mhz * 1e6,
                row.signal_power_dbm, row.noise_power_dbm, receiver.altitude_m))
        else:
            observations.append(PowerObservation.non_detection(
                receiver.id, receiver.latitude, receiver.longitude, row.frequency_mhz * 1e6,
                row.noise_power_dbm, receiver.altitude_m))
    return observations, uncalibrated


def localize_session(rows, registry, shadowing_sigma: float) -> tuple[LocalizationResult, list[PowerObservation]]:
    """The received-power localization of one session's rows; its reason names the receivers
    whose powers could not be used for lack of a dBm calibration (also when it localized)."""
    observations, uncalibrated = observations_of(rows, registry)
    result = localize(observations, shadowing_sigma_db=shadowing_sigma)
    if uncalibrated:
        left_out = (f"{len(uncalibrated)} receiver{'s' if len(uncalibrated) != 1 else ''} left out for uncalibrated "
                    f"dBFS powers (no dBm figure): {', '.join(uncalibrated)}")
        result = dataclasses.replace(result, reason=f"{result.reason}; {left_out}" if result.reason else left_out)
    return result, observations


def simulated_receivers(record, registry) -> bool:
    """Whether every receiver of the session was recorded by the simulator."""
    return all(record.source_kind_for(registry[rid]) == SIMULATED_KIND for rid in record.receiver_ids if rid in registry)


def shadowing_sigma_db(record, registry) -> float:
    """The spread of received powers around the path-loss model that the ellipse must allow for:
    known for an all-simulated session, the typical 6 dB of real propagation otherwise."""
    if record.transmitter and simulated_receivers(record, registry):
        return float(record.transmitter.get("shadowing_sigma_db", 0.0))
    return DEFAULT_SHADOWING_SIGMA_DB


def known_transmitter(record, iq_store: IQStore) -> tuple[float, float] | None:
    """The transmitter's true position when the session knows it: a simulated session's
    transmitter, or the `transmitter` of an imported batch's positions file (reference recordings)."""
    tx = record.transmitter or {}
    batch = (record.recordings or {}).get("batch")
    if tx.get("latitude") is None and batch is not None:
        positions = read_upload(iq_store, batch, POSITIONS_FILE)
        tx = (json.loads(positions).get("transmitter") or {}) if positions else {}
    if tx.get("latitude") is None or tx.get("longitude") is None:
        return None
    return float(tx["latitude"]), float(tx["longitude"])


def timed_captures_of(session_key: str, rows, registry, iq_store: IQStore) -> list["TimedCapture"]:
    """Each measured receiver's stored capture with its time model (fitted from the GNSS tags in
    the stored metadata), or the reason it has none."""
    from heimdall_pipeline.tdoa import TimedCapture, timed_capture

    captures = []
    for row in rows:
        receiver = registry[row.receiver_id]
        capture = load_capture(iq_store, session_key, receiver.id)
        if capture is None:
            captures.append(TimedCapture(receiver_id=receiver.id, latitude=float(receiver.latitude),
                                         longitude=float(receiver.longitude), samples=np.zeros(0, np.complex64),
                                         time_model=None, untimed_reason="no stored capture"))
        else:
            captures.append(timed_capture(receiver, capture))
    return captures


def localize_session_tdoa(record, rows, registry, iq_store: IQStore) -> "TdoaResult":
    """TDoA over the session's stored captures. Real receivers (any source but the simulator) are
    in the KiwiSDR timing class: a systematic offset per receiver their lag scatter cannot show
    (tdoa/allowance.py, docs/tdoa.md)."""
    from heimdall_pipeline.tdoa import TdoaResult, localize_tdoa
    from heimdall_pipeline.tdoa.allowance import REAL_RECEIVER_CLASS, SIMULATED_CLASS
    from heimdall_pipeline.tdoa.localize import DEFAULT_MAX_FREQUENCY_OFFSET_HZ

    too_long = sorted(row.receiver_id for row in rows if row.samples_count > MAX_TDOA_SAMPLES)
    if too_long:
        return TdoaResult(localized=False, reason=f"not localizable by TDoA: the captures of {', '.join(too_long)} "
                                                  f"exceed {MAX_TDOA_SAMPLES} samples per receiver")
    captures = timed_captures_of(record.session_key, rows, registry, iq_store)
    timing_class = SIMULATED_CLASS if simulated_receivers(record, registry) else REAL_RECEIVER_CLASS
    max_offset = max(DEFAULT_MAX_FREQUENCY_OFFSET_HZ, TUNING_SPREAD_PPM * 1e-6 * record.center_frequency_hz)
    return localize_tdoa(captures, timing_class=timing_class, max_frequency_offset_hz=max_offset,
                         truth=known_transmitter(record, iq_store))


def pair_table(result: "TdoaResult") -> str:
    """The pairs' lags as a Markdown table (microseconds)."""
    with_truth = any("lag_error_s" in p for p in result.pairs)
    header = "| pair | lag µs | std. error µs | window spread µs | windows | residual µs |"
    header += " true lag µs | lag error µs |" if with_truth else ""
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for p in result.pairs:
        line = (f"| {p['receiver_a']}–{p['receiver_b']} | {p['lag_s'] * 1e6:+.2f} | {p['standard_error_s'] * 1e6:.2f} | "
                f"{p['window_spread_s'] * 1e6:.2f} | {p['windows_used']}/{p['windows_total']} | "
                f"{p['residual_s'] * 1e6:+.2f} |")
        if with_truth:
            line += f" {p['true_lag_s'] * 1e6:+.2f} | {p['lag_error_s'] * 1e6:+.2f} |"
        lines.append(line)
    return "\n".join(lines)


def receiver_timing_table(result: "TdoaResult") -> str:
    """Each receiver's GNSS quality, timing allowance and (with 4+ receivers) estimated offset."""
    offsets = (result.cross_check or {}).get("receiver_offsets_us", {})
    lines = ["| receiver | GNSS quality | fresh fixes | stale frames | longest fix gap s | allowance µs (1σ) | "
             "estimated offset µs |", "|---|---|---|---|---|---|---|"]

    def figure(value, fmt: str) -> str:
        return "—" if value is None else format(value, fmt)

    for r in result.receivers:
        q, a = r.get("gnss_quality") or {}, r.get("timing_allowance") or {}
        verdict = q.get("severity", "—") + (": " + "; ".join(q["problems"]) if q.get("problems") else "")
        if r.get("left_out"):
            verdict += f" (left out: {r['left_out']})"
        offset = offsets.get(r["receiver_id"])
        offset_text = "—" if offset is None else f"{offset['estimate']:+.1f} ± {offset['sd']:.1f}"
        lines.append(f"| {r['receiver_id']} | {verdict} | {figure(q.get('fresh_fixes'), 'd')} | "
                     f"{figure(q.get('stale_frame_fraction'), '.0%')} | {figure(q.get('longest_fix_gap_s'), '.2f')} | "
                     f"{figure(a.get('sigma_s') and a['sigma_s'] * 1e6, '.1f')} | {offset_text} |")
    return "\n".join(lines)


def _map_metadata(iq_store: IQStore, session_key: str, png: bytes) -> MetadataValue:
    return shown_picture(iq_store, localization_object_key(session_key), png, {"session": session_key},
                         alt="localization", link="localization map")


def tdoa_metadata(result: "TdoaResult", iq_store: IQStore, session_key: str) -> dict:
    from heimdall_pipeline.plots.localization import plot_tdoa_localization  # matplotlib: when drawn

    truth = None if result.truth is None else (result.truth["latitude"], result.truth["longitude"])
    metadata = {
        "method": "tdoa", "localizable": True, "receivers_used": ", ".join(result.receivers_used),
        "latitude": result.latitude, "longitude": result.longitude,
        "region_95_semi_axes_km": f"{result.region.semi_major_km:.2f} × {result.region.semi_minor_km:.2f}",
        "region_95_major_bearing_deg": result.region.major_bearing_deg,
        "tdoa_pairs": MetadataValue.md(pair_table(result)),
        "signal_band_hz": f"{result.band_hz[0]:.0f} .. {result.band_hz[1]:.0f}",
        "common_span_s": result.common_span_s,
        "timing_assumed": result.timing_model,
        "cross_check": result.cross_check["text"],
        "receiver_timing": MetadataValue.md(receiver_timing_table(result)),
        "map": _map_metadata(iq_store, session_key, plot_tdoa_localization(result, truth)),
    }
    if result.error_km is not None:
        metadata["error_vs_known_position_km"] = result.error_km
        metadata["known_position_inside_region_95"] = bool(result.truth["inside_region"])
    return metadata


def rss_metadata(result: LocalizationResult, observations, truth, iq_store: IQStore, session_key: str) -> dict:
    metadata = {"method": "rss", "localizable": result.localizable, "receivers_used": ", ".join(result.receivers_used)}
    if result.localizable:
        from heimdall_pipeline.plots.localization import plot_localization  # matplotlib: when drawn

        metadata.update({
            "latitude": result.latitude, "longitude": result.longitude,
            "ellipse_95_semi_axes_km": f"{result.ellipse_semi_major_km:.1f} × {result.ellipse_semi_minor_km:.1f}",
            "ellipse_orientation_deg": result.ellipse_orientation_deg,
            "eirp_dbm": result.eirp_dbm, "path_loss_exponent": result.path_loss_exponent,
            "map": _map_metadata(iq_store, session_key, plot_localization(result, observations, truth)),
        })
        if truth:
            metadata["error_vs_known_position_km"] = result.distance_km(*truth)
    if result.reason:
        metadata["reason"] = result.reason
    return metadata


@dataclasses.dataclass(frozen=True)
class StoredLocalization:
    method: str | None  # "tdoa" or "rss" when the session was localized that way, else None
    message: str  # one line for the run's log
    metadata: dict  # the partition's metadata (map picture stored beside the captures)


def localize_and_store(engine, registry, iq_store: IQStore, record) -> StoredLocalization:
    """One session's localization: by TDoA when its timed captures allow, else by received power;
    the row upserted (a TDoA answer replaces an earlier received-power row) and the map stored."""
    from heimdall_pipeline.db.localization_rows import rss_row, tdoa_row  # the database layer loads with the first run
    from heimdall_pipeline.db.measurements_repo import delete_localization, measurements_for_session, upsert_localization

    session_key = record.session_key
    rows = measurements_for_session(engine, session_key)
    tdoa = localize_session_tdoa(record, rows, registry, iq_store)
    upsert_localization(engine, tdoa_row(tdoa, session_key, record.scheduled_for))
    if tdoa.localized:
        # the session's answer is the TDoA one: an earlier received-power row would contradict it
        delete_localization(engine, session_key, "rss")
        metadata = tdoa_metadata(tdoa, iq_store, session_key)
        metadata["tdoa"] = "used"
        return StoredLocalization("tdoa", (
            f"session {session_key}: TDoA places the transmitter at {tdoa.latitude:.4f}, {tdoa.longitude:.4f} "
            f"(95 % region {tdoa.region.semi_major_km:.2f} × {tdoa.region.semi_minor_km:.2f} km)"), metadata)
    result, observations = localize_session(rows, registry, shadowing_sigma_db(record, registry))
    upsert_localization(engine, rss_row(result, session_key, record.scheduled_for,
                                        {"transmitter_truth": record.transmitter}))
    metadata = rss_metadata(result, observations, known_transmitter(record, iq_store), iq_store, session_key)
    metadata["tdoa_receivers_timed"] = ", ".join(r["receiver_id"] for r in tdoa.receivers if r["timed"])
    if tdoa.left_out:
        metadata["tdoa_left_out"] = "; ".join(f"{rid}: {why}" for rid, why in tdoa.left_out.items())
    metadata["tdoa"] = tdoa.reason
    message = f"session {session_key}: {tdoa.reason}; received power: " + (
        f"transmitter at {result.latitude:.3f}, {result.longitude:.3f} (95 % ellipse "
        f"{result.ellipse_semi_major_km:.1f} × {result.ellipse_semi_minor_km:.1f} km)"
        if result.localizable else f"not localizable: {result.reason}")
    return StoredLocalization("rss" if result.localizable else None, message, metadata)


@asset(
    partitions_def=session_partitions,
    deps=[AssetDep("receiver_metrics", partition_mapping=captures_to_session)],
    backfill_policy=BackfillPolicy.single_run(),
    group_name="heimdall",
    kinds={"timescaledb", "scipy"},
    description="Transmitter position with a 95 % region: by time difference of arrival (the stored captures "
                "aligned on GNSS time, pair lags, hyperbolic fit) when at least 3 receivers hold timed captures "
                "of the signal, else from the receivers' signal powers (log-distance path loss); "
                "the `method` column and metadata say which, and why TDoA was not used.",
)
def session_localization(context: AssetExecutionContext, database: HeimdallDatabase,
                         iq_store: IQStore) -> MaterializeResult:
    from heimdall_pipeline.db.receivers_repo import list_receivers  # the database layer loads with the first run
    from heimdall_pipeline.db.sessions_repo import get_session

    engine = database.engine()
    registry = {receiver.id: receiver for receiver in list_receivers(engine)}
    by_method = {"tdoa": 0, "rss": 0}
    for session_key in context.partition_keys:
        record = get_session(engine, session_key)
        if record is None:
            raise ValueError(f"session {session_key!r} is not in the sessions table")
        located = localize_and_store(engine, registry, iq_store, record)
        if located.method:
            by_method[located.method] += 1
        context.log.info(located.message)
        context.add_asset_metadata(located.metadata, partition_key=session_key)
    return MaterializeResult(metadata={"sessions": len(context.partition_keys), "localized_by_tdoa": by_method["tdoa"],
                                       "localized_by_rss": by_method["rss"]})
