"""session_localization: where the transmitter of a session is, from its receivers' powers."""

import dataclasses

from dagster import AssetDep, AssetExecutionContext, AutomationCondition, BackfillPolicy, MaterializeResult, MetadataValue, asset

from heimdall_pipeline.assets.sessions import per_session
from heimdall_pipeline.localization import DEFAULT_SHADOWING_SIGMA_DB, LocalizationResult, PowerObservation, localize
from heimdall_pipeline.partitions import session_partitions
from heimdall_pipeline.resources import HeimdallDatabase
from heimdall_pipeline.resources.iq_store import IQStore
from heimdall_pipeline.storage.layout import localization_object_key


def observations_of(rows, registry) -> tuple[list[PowerObservation], list[str]]:
    """Received-power observations from the rows with dBm figures (measured in dBm, or dBFS with a
    calibration), and the receivers left out for having only uncalibrated dBFS figures.
    Detections give a received power; non-detections an upper bound (their noise power)."""
    observations, uncalibrated = [], []
    for row in rows:
        if row.noise_power_dbm is None:
            uncalibrated.append(row.receiver_id)
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


def shadowing_sigma_db(record, registry) -> float:
    """The spread of received powers around the path-loss model that the ellipse must allow for:
    known for an all-simulated session, the typical 6 dB of real propagation otherwise."""
    if record.transmitter and all(registry[rid].kind == "simulated" for rid in record.receiver_ids if rid in registry):
        return float(record.transmitter.get("shadowing_sigma_db", 0.0))
    return DEFAULT_SHADOWING_SIGMA_DB


@asset(
    partitions_def=session_partitions,
    deps=[AssetDep("receiver_metrics", partition_mapping=per_session)],
    backfill_policy=BackfillPolicy.single_run(),
    automation_condition=AutomationCondition.eager(),
    group_name="heimdall",
    kinds={"timescaledb", "scipy"},
    description="Transmitter position with a 95 % confidence ellipse, from the receivers' signal powers "
                "(log-distance path loss, robust least squares); 'not localizable' below 3 detections.",
)
def session_localization(context: AssetExecutionContext, database: HeimdallDatabase,
                         iq_store: IQStore) -> MaterializeResult:
    from heimdall_pipeline.db.measurements_repo import measurements_for_session, upsert_localization  # the database layer (SQLAlchemy) loads with the first run, not the code location
    from heimdall_pipeline.db.receivers_repo import list_receivers
    from heimdall_pipeline.db.sessions_repo import get_session

    engine = database.engine()
    registry = {receiver.id: receiver for receiver in list_receivers(engine)}
    located = 0
    for session_key in context.partition_keys:
        record = get_session(engine, session_key)
        if record is None:
            raise ValueError(f"session {session_key!r} is not in the sessions table")
        result, observations = localize_session(measurements_for_session(engine, session_key), registry,
                                                shadowing_sigma_db(record, registry))
        row = result.to_row(session_key, record.scheduled_for, {"transmitter_truth": record.transmitter})
        upsert_localization(engine, row)
        metadata = {"localizable": result.localizable, "receivers_used": ", ".join(result.receivers_used)}
        if result.localizable:
            located += 1
            truth = record.transmitter
            from heimdall_pipeline.localization.plotting import plot_localization  # matplotlib: when drawn

            png_key = localization_object_key(session_key)
            iq_store.put(png_key, plot_localization(
                result, observations, (truth["latitude"], truth["longitude"]) if truth else None),
                "image/png", {"session": session_key})
            url = iq_store.presigned_url(png_key)
            metadata.update({
                "latitude": result.latitude, "longitude": result.longitude,
                "ellipse_95_semi_axes_km": f"{result.ellipse_semi_major_km:.1f} × {result.ellipse_semi_minor_km:.1f}",
                "ellipse_orientation_deg": result.ellipse_orientation_deg,
                "eirp_dbm": result.eirp_dbm, "path_loss_exponent": result.path_loss_exponent,
                "map": MetadataValue.md(f"![localization]({url})\n\n[localization map]({url})"),
            })
            if truth:
                metadata["error_vs_simulated_truth_km"] = result.distance_km(truth["latitude"], truth["longitude"])
        if result.reason:
            metadata["reason"] = result.reason
        context.add_asset_metadata(metadata, partition_key=session_key)
        context.log.info(f"session {session_key}: " + (
            f"transmitter at {result.latitude:.3f}, {result.longitude:.3f} (95 % ellipse "
            f"{result.ellipse_semi_major_km:.1f} × {result.ellipse_semi_minor_km:.1f} km)"
            if result.localizable else f"not localizable: {result.reason}"))
    return MaterializeResult(metadata={"sessions": len(context.partition_keys), "localized": located})
