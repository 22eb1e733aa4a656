"""Measurement rows never put a dBFS figure in a dBm column (the power-unit check constraint);
received-power localization uses dBm rows only."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import numpy as np
import pytest
from sqlalchemy.exc import IntegrityError

from heimdall_pipeline.assets.metrics import measurement_row
from heimdall_pipeline.db import measurements_repo as mrepo
from heimdall_pipeline.capture import Capture
from heimdall_pipeline_tests.integration.db_fixtures import scratch_engine  # noqa: F401

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
FS = 12_000.0


def _capture(power_unit: str, calibration: dict | None, key: str, receiver: str = "f5len") -> Capture:
    rng = np.random.default_rng(1)
    n = int(FS)
    noise = (rng.normal(size=n) + 1j * rng.normal(size=n)) * 1e-3
    carrier = 0.05 * np.exp(2j * np.pi * 700.0 * np.arange(n) / FS)
    return Capture(key, receiver, (noise + carrier).astype(np.complex64), FS, 7.1e6, T0, "kiwisdr",
                   power_unit=power_unit, calibration=calibration)


def test_simulated_dbm_capture_fills_dbm_columns(scratch_engine):
    row = measurement_row(_capture("dBm", None, "unit-dbm"), "bucket")
    assert row.power_unit == "dBm" and row.signal_detected
    assert row.signal_power_dbm == pytest.approx(10 * np.log10(0.05**2), abs=0.3)
    assert row.noise_power_dbm is not None and row.psd_dbm_hz is not None
    assert (row.signal_power_dbfs, row.noise_power_dbfs, row.calibration_offset_db) == (None, None, None)
    mrepo.upsert_measurements(scratch_engine, [row])
    assert mrepo.measurements_for_session(scratch_engine, "unit-dbm")[0].signal_power_dbm == row.signal_power_dbm


def test_uncalibrated_dbfs_capture_leaves_dbm_columns_empty(scratch_engine):
    row = measurement_row(_capture("dBFS", None, "unit-dbfs"), "bucket")
    assert row.power_unit == "dBFS"
    assert row.signal_power_dbfs == pytest.approx(10 * np.log10(0.05**2), abs=0.3)
    assert row.noise_power_dbfs is not None
    assert (row.signal_power_dbm, row.noise_power_dbm, row.psd_dbm_hz) == (None, None, None)
    assert row.required_power_figures().keys() == {"noise_power_dbfs", "signal_power_dbfs"}
    mrepo.upsert_measurements(scratch_engine, [row])
    [stored] = mrepo.measurements_for_session(scratch_engine, "unit-dbfs")
    assert stored.power_unit == "dBFS" and stored.noise_power_dbm is None
    assert stored.power_text("signal").endswith(" dBFS")


def test_calibrated_dbfs_capture_fills_dbm_columns_with_the_offset(scratch_engine):
    calibration = {"offset_db": -20.5, "spread_db": 0.4, "frames": 12}
    row = measurement_row(_capture("dBFS", calibration, "unit-cal"), "bucket")
    assert row.signal_power_dbm == pytest.approx(row.signal_power_dbfs - 20.5)
    assert row.noise_power_dbm == pytest.approx(row.noise_power_dbfs - 20.5)
    assert (row.calibration_offset_db, row.calibration_spread_db) == (-20.5, 0.4)
    mrepo.upsert_measurements(scratch_engine, [row])
    [stored] = mrepo.measurements_for_session(scratch_engine, "unit-cal")
    assert stored.calibration_offset_db == -20.5 and stored.signal_power_dbm == pytest.approx(row.signal_power_dbm)


def test_database_refuses_a_dbfs_figure_in_a_dbm_column(scratch_engine):
    row = measurement_row(_capture("dBFS", None, "unit-bad"), "bucket")
    with pytest.raises(IntegrityError, match="measurements_power_figures_match_unit"):
        mrepo.upsert_measurements(scratch_engine, [dataclasses.replace(row, noise_power_dbm=row.noise_power_dbfs)])
    with pytest.raises(IntegrityError, match="violates check constraint"):
        mrepo.upsert_measurements(scratch_engine, [dataclasses.replace(row, power_unit="dBW")])
    assert mrepo.count_measurements(scratch_engine, session_key="unit-bad") == 0


def test_unknown_power_unit_is_refused_naming_it():
    with pytest.raises(ValueError, match="'mW'"):
        measurement_row(_capture("mW", None, "unit-mw"), "bucket")
