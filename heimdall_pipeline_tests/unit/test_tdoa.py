"""TDoA localization: the real DCF77 recordings, a receiver with a far-off clock, the simulator's
accuracy, and the sessions TDoA must refuse (never an invented point)."""

import dataclasses
import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from heimdall_pipeline.dsp.resample import interpolate_at
from heimdall_pipeline.dsp.timing import NS, SECONDS_PER_WEEK, fit_time_model
from heimdall_pipeline.propagation import haversine_km
from heimdall_pipeline.receivers import DEFAULT_RECEIVERS
from heimdall_pipeline.capture import GpsTimestamp
from heimdall_pipeline.sources.simulator import Transmitter, receiver_characteristics, simulate_capture
from heimdall_pipeline.tdoa import localize_tdoa, timed_capture
from heimdall_pipeline.storage.kiwi_wav import KiwiWavRecording, read_kiwi_wav, recording_capture
from heimdall_pipeline.accuracy.tdoa import real_recordings_figure, recording_positions, simulated_figure
from heimdall_pipeline_tests.data import DCF77_DIR

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def test_real_dcf77_within_2_km_with_each_pairs_lag_error():
    figure = real_recordings_figure(DCF77_DIR)
    assert figure["localized"], figure["reason"]
    assert figure["error_km"] < 2.0
    assert figure["inside_region_95"]  # with the real receivers' timing allowance
    assert set(figure["lag_errors_us"]) == {"hb9odp-jo51xl", "hb9odp-pa0rdt", "jo51xl-pa0rdt"}
    assert all(abs(e) < 12.0 for e in figure["lag_errors_us"].values())
    result = figure["result"]
    json.dumps(result)  # JSON-serialisable as it is
    assert result["method"] == "tdoa" and all(r["used"] and r["timed"] for r in result["receivers"])
    for pair in result["pairs"]:
        assert abs(pair["lag_s"] - pair["true_lag_s"] - pair["lag_error_s"]) < 1e-12
        assert pair["windows_used"] >= 0.8 * pair["windows_total"] >= 40
        assert pair["standard_error_s"] < 2e-6
    assert result["region_95"]["semi_major_km"] > 0 and len(result["region_95"]["polygon"]) > 8
    # what the region assumes, and that three receivers check nothing
    assert "±30 µs" in result["timing_model"] and result["cross_check"]["status"] == "unchecked"
    assert "nothing cross-checks" in result["cross_check"]["text"]
    for receiver in result["receivers"]:
        assert receiver["gnss_quality"]["severity"] in ("ok", "warn") and receiver["gnss_quality"]["fresh_fixes"] > 150
        assert receiver["timing_allowance"]["sigma_s"] == pytest.approx(30e-6 / 3**0.5, rel=0.01)


def test_a_capture_failing_its_gnss_quality_is_left_out_by_name():
    receivers, truth = recording_positions(DCF77_DIR)
    captures = [timed_capture(receivers[name], recording_capture(
        read_kiwi_wav(DCF77_DIR / f"20200813T065220Z_77500_{name}_iq.wav"), "s", receivers[name].id))
        for name in ("HB9ODP", "JO51xl", "pa0rdt")]
    failing = dataclasses.replace(captures[1], gnss=dataclasses.replace(
        captures[1].gnss, severity="error", problems=("longest gap between fixes 42.0 s (error above 10)",)))
    result = localize_tdoa([captures[0], failing, captures[2]], truth=truth)
    assert not result.localized and "jo51xl: GNSS quality: longest gap between fixes 42.0 s" in result.reason
    assert result.left_out == {"jo51xl": "GNSS quality: longest gap between fixes 42.0 s (error above 10)"}


def _faster_clock(recording: KiwiWavRecording, ppm: float) -> KiwiWavRecording:
    """The recording as a receiver whose clock ran ppm faster would have made it: the samples read
    again at the faster rate, the frame tags moved to the new frame starts (fix ages kept)."""
    model = fit_time_model(recording.timestamps, recording.header_rate_hz, recording.name.start_utc,
                           len(recording.samples))
    factor = 1.0 / (1.0 + ppm * 1e-6)  # old samples per new sample
    n = int((len(recording.samples) - 64) / factor) // 512 * 512
    ages = {s.sample_index // 512: s.fix_age_s for s in recording.timestamps}
    stamps = []
    for k in range(0, n, 512):
        t_ns = model.sample0_gps_ns + round(model.gps_seconds_since(model.sample0_gps_ns, k * factor) * NS)
        sow = t_ns % (SECONDS_PER_WEEK * NS)
        stamps.append(GpsTimestamp(k, sow // NS, sow % NS, True, ages.get(int(k * factor) // 512, 0)))
    return dataclasses.replace(recording, samples=interpolate_at(recording.samples, np.arange(n) * factor),
                               timestamps=tuple(stamps))


def test_receiver_whose_clock_is_far_off_the_header_rate_is_used():
    receivers, truth = recording_positions(DCF77_DIR)
    captures = []
    for name, ppm in (("HB9ODP", 100.0), ("JO51xl", 0.0), ("pa0rdt", -60.0)):
        recording = _faster_clock(read_kiwi_wav(DCF77_DIR / f"20200813T065220Z_77500_{name}_iq.wav"), ppm)
        captures.append(timed_capture(receivers[name], recording_capture(recording, "s", receivers[name].id)))
    fast = captures[0].time_model
    assert abs(fast.sample_rate_hz - 12001.0) * 2.0 > 2.0  # > 2 samples off per 2-s fix interval
    assert abs(captures[2].time_model.sample_rate_hz - 12001.0) * 2.0 > 1.0
    result = localize_tdoa(captures, truth=truth)
    assert result.localized, result.reason
    assert all(r["used"] for r in result.receivers)
    assert result.error_km < 2.0


def test_simulated_accuracy_inside_the_default_receivers():
    figure = simulated_figure(trials=20, seed=11, snr_db=10.0, duration_s=6.0)
    assert figure["localized"] == 20, figure["refused"]
    assert figure["median_error_km"] <= 1.0
    assert figure["inside_region_95_fraction"] >= 0.9
    assert figure["lag_error_rms_us"] < 3.0


def _sim_captures(modulation="noise", receivers=DEFAULT_RECEIVERS[:4], starts=None, duration=4.0):
    tx = Transmitter(frequency_hz=7.1e6 + 700.0, eirp_dbm=60.0, latitude=48.5, longitude=7.5, modulation=modulation)
    starts = starts or [T0] * len(receivers)
    return [timed_capture(r, simulate_capture("s-refuse", r, tx, 7.1e6, 12000.0, duration, start))
            for r, start in zip(receivers, starts)]


def test_fewer_than_three_timed_receivers_is_not_localizable():
    captures = _sim_captures()
    result = localize_tdoa(captures[:2])
    assert not result.localized and result.latitude is None and result.region is None
    assert "not localizable by TDoA" in result.reason and "2 timed receiver(s)" in result.reason
    untimed = dataclasses.replace(captures[2], time_model=None, untimed_reason="0 fresh GNSS fix(es) among 94")
    result = localize_tdoa(captures[:2] + [untimed])
    assert not result.localized and f"{untimed.receiver_id}: 0 fresh GNSS fix(es)" in result.reason
    json.dumps(result.to_json())


def test_a_pure_carrier_has_no_time_structure():
    result = localize_tdoa(_sim_captures("carrier"))
    assert not result.localized and result.latitude is None
    assert "pure carrier" in result.reason


def test_captures_that_do_not_overlap_in_time():
    starts = [T0, T0 + timedelta(seconds=10), T0 + timedelta(seconds=20)]
    result = localize_tdoa(_sim_captures(receivers=DEFAULT_RECEIVERS[:3], starts=starts))
    assert not result.localized and "do not overlap" in result.reason


def test_simulated_session_lags_match_the_geometry():
    captures = _sim_captures(receivers=DEFAULT_RECEIVERS[:5], duration=6.0)
    result = localize_tdoa(captures, truth=(48.5, 7.5))
    assert result.localized, result.reason
    assert result.error_km < 1.0 and result.truth["inside_region"]
    assert len(result.pairs) == 10
    for pair in result.pairs:
        assert abs(pair["lag_error_s"]) < 1e-6
    assert haversine_km(result.latitude, result.longitude, 48.5, 7.5) == pytest.approx(result.error_km)
    # every receiver is used, including clocks off the nominal rate by more than a sample per fix interval
    assert all(r["used"] for r in result.receivers)
    off = [abs(receiver_characteristics(c.receiver_id).sample_rate_error_ppm) * 1e-6 * 12000.0 * 2.0 for c in captures]
    assert max(off) > 1.0
