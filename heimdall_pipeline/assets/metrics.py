"""receiver_metrics: SNR, PSD peak, frequency offset, signal and noise power per capture,
upserted into the TimescaleDB `measurements` hypertable (one row per session × receiver)."""

from collections.abc import Mapping
from typing import TYPE_CHECKING

from dagster import AssetExecutionContext, AssetIn, BackfillPolicy, MaterializeResult, asset

from heimdall_pipeline.resources.iq_store import IQStore
from heimdall_pipeline.partitions import PER_PARTITION_METADATA_LIMIT, capture_partitions, split_capture_key
from heimdall_pipeline.resources import HeimdallDatabase
from heimdall_pipeline.capture import Capture
from heimdall_pipeline.storage.iq_format import capture_time_model
from heimdall_pipeline.storage.layout import iq_object_key

if TYPE_CHECKING:
    from heimdall_pipeline.db.measurements_repo import MeasurementRow
    from heimdall_pipeline.dsp.metrics import SignalMetrics


def power_columns(metrics: "SignalMetrics", power_unit: str, calibration: dict | None) -> dict:
    """The measurement columns of the metrics' powers (in the capture's unit): a dBm capture fills
    the dBm columns; a dBFS capture fills its dBFS columns, and the dBm ones only when calibrated
    (dBFS + offset_db), so a dBm column never holds a dBFS figure."""
    if power_unit == "dBm":
        return {"power_unit": "dBm", "signal_power_dbm": metrics.signal_power_db,
                "noise_power_dbm": metrics.noise_power_db, "psd_dbm_hz": metrics.psd_peak_db_hz}
    if power_unit != "dBFS":
        raise ValueError(f"power_unit {power_unit!r}: expected 'dBm' or 'dBFS'")
    columns = {"power_unit": "dBFS", "signal_power_dbfs": metrics.signal_power_db,
               "noise_power_dbfs": metrics.noise_power_db}
    if calibration is not None:
        offset = float(calibration["offset_db"])
        columns.update(
            signal_power_dbm=None if metrics.signal_power_db is None else metrics.signal_power_db + offset,
            noise_power_dbm=metrics.noise_power_db + offset, psd_dbm_hz=metrics.psd_peak_db_hz + offset,
            calibration_offset_db=offset, calibration_spread_db=calibration.get("spread_db"))
    return columns


def capture_columns(capture: Capture, bucket: str) -> dict:
    """The columns that name a capture and where it is stored (every measurement row has them)."""
    return {"time": capture.start_time, "session_key": capture.session_key, "receiver_id": capture.receiver_id,
            "frequency_mhz": capture.center_frequency_hz / 1e6, "sample_rate_khz": capture.sample_rate_hz / 1e3,
            "samples_count": len(capture.samples),
            "iq_data_path": f"s3://{bucket}/{iq_object_key(capture.session_key, capture.receiver_id)}"}


AUDIO_UNITS = {
    "snr_db": "dB, tone over the noise in the audio passband",
    "frequency_offset_hz": "Hz, tone RF (dial + audio frequency, USB) minus the session frequency",
    "audio_frequency_hz": "Hz, where the tone sounds in the audio",
    "smeter_dbfs": "dB relative to the SDR's full scale: mean of the receiver's S-meter (channel power after "
                   "its bandpass), uncalibrated",
    "signal_power_dbfs": "dBFS, the S-meter power's tone share (by the measured SNR)",
    "noise_power_dbfs": "dBFS, the S-meter power's noise share (by the measured SNR)",
    "audio_level_dbfs": "dBFS of the audio after the receiver's AGC: a relative figure only",
}


def audio_measurement_row(capture: Capture, bucket: str) -> "MeasurementRow":
    """The measurements row of an audio capture (dsp/audio.py; units in AUDIO_UNITS)."""
    from heimdall_pipeline.db.measurements_repo import MeasurementRow  # the database layer loads with the first run
    from heimdall_pipeline.dsp.audio import compute_audio_metrics  # scipy: loaded when first measured

    audio = capture.audio or {}
    passband = tuple(float(f) for f in audio["passband_hz"])
    readings = (audio.get("smeter") or {}).get("readings") or []
    metrics = compute_audio_metrics(capture.samples, capture.sample_rate_hz, passband, readings)
    rf_offset = None
    if metrics.audio_frequency_hz is not None:
        rf_offset = float(audio["dial_frequency_hz"]) + metrics.audio_frequency_hz - capture.center_frequency_hz
    return MeasurementRow(
        **capture_columns(capture, bucket),
        snr_db=metrics.snr_db,
        frequency_offset_hz=rf_offset,
        signal_detected=metrics.rf.signal_detected,
        metadata_json={"metrics": metrics.as_dict(), "units": AUDIO_UNITS, "source_kind": capture.source_kind,
                       "audio": {k: v for k, v in audio.items() if k != "smeter"},
                       "smeter": {k: v for k, v in (audio.get("smeter") or {}).items() if k != "readings"},
                       "timing": {"untimed_reason": capture_time_model(capture, capture.sample_rate_hz)[1]}},
        power_unit="dBFS",
        capture_signal="audio",
        signal_power_dbfs=metrics.signal_power_dbfs,
        noise_power_dbfs=metrics.noise_power_dbfs,
        smeter_dbfs=metrics.smeter_dbfs,
        audio_level_dbfs=metrics.audio_level_dbfs,
        audio_frequency_hz=metrics.audio_frequency_hz,
    )


def measurement_row(capture: Capture, bucket: str) -> "MeasurementRow":
    """The measurements row of one capture (pure: the benchmark's baseline calls it too)."""
    from heimdall_pipeline.db.measurements_repo import MeasurementRow  # the database layer (SQLAlchemy) loads with the first run, not the code location
    from heimdall_pipeline.dsp.metrics import compute_metrics  # scipy: loaded when first measured

    if capture.is_audio:
        return audio_measurement_row(capture, bucket)

    metrics = compute_metrics(capture.samples, capture.sample_rate_hz)
    # the same time model the stored SigMF metadata carries (deterministic from the timestamps)
    model, untimed_reason = capture_time_model(
        capture, float(capture.details.get("nominal_sample_rate_hz", capture.sample_rate_hz)))
    return MeasurementRow(
        **capture_columns(capture, bucket),
        snr_db=metrics.snr_db,
        frequency_offset_hz=metrics.frequency_offset_hz,
        signal_detected=metrics.signal_detected,
        metadata_json={"metrics": metrics.as_dict(), "metrics_power_unit": capture.power_unit,
                       "calibration": capture.calibration, "source_kind": capture.source_kind,
                       "ground_truth": capture.ground_truth,
                       "timing": model.summary() if model is not None else {"untimed_reason": untimed_reason}},
        **power_columns(metrics, capture.power_unit, capture.calibration),
        measured_sample_rate_hz=None if model is None else model.sample_rate_hz,
        sample_rate_spread_hz=None if model is None else model.sample_rate_spread_hz,
        timing_rms_ns=None if model is None else model.timing_rms_ns,
        core_datetime=None if model is None else model.core_datetime,
    )


@asset(
    partitions_def=capture_partitions,
    ins={"raw_iq": AssetIn()},
    backfill_policy=BackfillPolicy.single_run(),
    group_name="heimdall",
    kinds={"timescaledb", "scipy"},
    description="Signal metrics of each capture, upserted into the measurements hypertable.",
)
def receiver_metrics(context: AssetExecutionContext, raw_iq: Mapping, database: HeimdallDatabase,
                     iq_store: IQStore) -> MaterializeResult:
    rows = []
    per_partition = len(raw_iq) <= PER_PARTITION_METADATA_LIMIT
    for key, capture in raw_iq.items():
        if capture is None:
            if per_partition:
                context.add_asset_metadata({"receiver": split_capture_key(key)[1], "metrics_status": "no capture"},
                                           partition_key=key)
            continue
        row = measurement_row(capture, iq_store.bucket)
        rows.append(row)
        if per_partition:
            context.add_asset_metadata({
                "receiver": row.receiver_id,
                "metrics_status": "stored",
                "snr_db": row.snr_db if row.snr_db is not None else float("nan"),
                "signal_detected": row.signal_detected,
                "frequency_offset_hz": row.frequency_offset_hz if row.frequency_offset_hz is not None else float("nan"),
                **({"noise_power_dbm": row.noise_power_dbm} if row.noise_power_dbm is not None
                   else {"noise_power_dbfs": row.noise_power_dbfs if row.noise_power_dbfs is not None
                         else float("nan")}),
                **({"capture_signal": "audio", "smeter_dbfs": row.smeter_dbfs if row.smeter_dbfs is not None
                    else float("nan"), "audio_level_dbfs_relative": row.audio_level_dbfs}
                   if row.capture_signal == "audio" else {}),
            }, partition_key=key)
    # One transaction: a failure leaves no partial set of rows behind.
    from heimdall_pipeline.db.measurements_repo import upsert_measurements

    upsert_measurements(database.engine(), rows)
    return MaterializeResult(metadata={"rows_upserted": len(rows), "partitions": len(raw_iq)})
