"""Time models: sample index -> GPS time from per-frame GNSS timestamps."""

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from heimdall_pipeline.dsp.timing import (
    NS,
    TimeModel,
    UntimedCaptureError,
    fit_time_model,
    format_utc_ns,
    leap_seconds_at,
    resolve_gps_ns,
    utc_to_gps_ns,
)
from heimdall_pipeline.capture import GpsTimestamp
from heimdall_pipeline.storage.kiwi_wav import read_kiwi_wav
from heimdall_pipeline_tests.data import DCF77_DIR

START = datetime(2020, 8, 13, 6, 52, 20, tzinfo=timezone.utc)
FRAME = 512


def kiwi_stamps(true_rate, n_frames, start_gps_ns, *, jitter_ns=0.0, seed=0, fix_period_frames=47, fresh_frames=13,
                stale_drift_ns_per_frame=300.0, drop=(), outliers=(), rate_ramp_hz=0.0):
    """Frame tags as a KiwiSDR sends them: fresh for a while after each fix, then stale and drifting.

    rate_ramp_hz: the clock's rate rises linearly by this much over the n_frames."""
    rng = np.random.default_rng(seed)
    stamps = []
    for k in range(n_frames):
        if k in drop:
            continue
        # small floats only: absolute ns need integers. Time = integral of 1/rate over the samples.
        rate_mid = true_rate + rate_ramp_hz * (k / 2) / n_frames
        offset_ns = k * FRAME * NS / rate_mid
        phase = k % fix_period_frames
        age = 0 if phase < fresh_frames else 1 + (phase - fresh_frames) * 2 // (fix_period_frames - fresh_frames)
        offset_ns += rng.normal(0.0, jitter_ns) + (0 if age == 0 else stale_drift_ns_per_frame * phase)
        if k in outliers:
            offset_ns += 1e6 * outliers[k]  # milliseconds
        tag = start_gps_ns + int(round(offset_ns))
        week_ns = 604_800 * NS
        sow = tag % week_ns
        stamps.append(GpsTimestamp(k * FRAME, sow // NS, sow % NS, True, age))
    return stamps


def test_leap_seconds_and_gps_epoch():
    assert leap_seconds_at(datetime(2016, 12, 31, 23, 59, 59, tzinfo=timezone.utc)) == 17
    assert leap_seconds_at(START) == 18
    assert leap_seconds_at(datetime(1980, 1, 6, tzinfo=timezone.utc)) == 0
    # 2020-08-13 06:52:20 UTC is GPS week 2118, second 370358 (Thursday, + 18 s)
    assert utc_to_gps_ns(START) == (2118 * 604_800 + 370_358) * NS
    with pytest.raises(ValueError, match="time zone"):
        utc_to_gps_ns(datetime(2020, 1, 1))


def test_week_wrap_resolved_from_the_anchor():
    anchor = utc_to_gps_ns(datetime(2020, 8, 16, 0, 0, 5, tzinfo=timezone.utc))  # just after a week starts
    # a tag from the end of the previous week belongs to the previous week, not 7 days later
    assert resolve_gps_ns(604_790, 0, anchor) == (2118 * 604_800 + 604_790) * NS
    assert resolve_gps_ns(3, 0, anchor) == (2119 * 604_800 + 3) * NS


@pytest.mark.parametrize("rate_error_ppm", [-40.0, 0.0, 17.3])
def test_measures_a_known_rate_with_jitter_and_stale_tags(rate_error_ppm):
    true_rate = 12001.0 * (1 + rate_error_ppm * 1e-6)
    start = utc_to_gps_ns(START) + 123_456_789
    stamps = kiwi_stamps(true_rate, 700, start, jitter_ns=100.0, seed=3)
    model = fit_time_model(stamps, 12001.0, START, n_samples=700 * FRAME)
    assert model.sample_rate_hz == pytest.approx(true_rate, abs=0.005)
    assert model.nominal_sample_rate_hz == 12001.0
    assert abs(model.sample0_gps_ns - start) < 150  # ns, from 100 ns jitter tags
    errors = model.gps_seconds_since(start, np.arange(0, 700 * FRAME, 997)) - np.arange(0, 700 * FRAME, 997) / true_rate
    assert np.max(np.abs(errors)) < 150e-9
    assert 50 < model.timing_rms_ns < 150  # the tags' jitter shows in the quality figure
    assert model.sample_rate_spread_hz < 0.05
    assert model.fresh_fixes == sum(1 for s in stamps if s.fix_age_s == 0)
    assert model.stale_or_missing_frames == 700 - model.fresh_fixes


def test_stale_tags_are_not_trusted():
    start = utc_to_gps_ns(START)
    stamps = kiwi_stamps(12001.1, 300, start, stale_drift_ns_per_frame=20_000.0)
    model = fit_time_model(stamps, 12001.0, START)
    assert model.sample_rate_hz == pytest.approx(12001.1, abs=1e-4)
    assert model.timing_rms_ns < 2


def test_outliers_and_a_gap():
    start = utc_to_gps_ns(START)
    drop = set(range(100, 250))  # 6 s without any frame tag (dropped frames, zero-filled)
    stamps = kiwi_stamps(12001.07, 500, start, jitter_ns=50.0, seed=5, drop=drop,
                         outliers={1: -11_615_000.0, 282: 0.3, 283: -2.0})  # fresh frames
    model = fit_time_model(stamps, 12001.0, START)
    assert model.rejected_fixes == 3
    assert model.sample_rate_hz == pytest.approx(12001.07, abs=0.005)
    idx = np.arange(100 * FRAME, 250 * FRAME, 1000)
    assert np.max(np.abs(model.gps_seconds_since(start, idx) - idx / 12001.07)) < 200e-9  # index = time across the gap
    assert model.max_fix_gap_s > 6.0


def test_follows_a_wandering_clock_per_fix_interval():
    """A clock whose rate drifts by 2.5 ppm over the capture: the piecewise model follows it to
    tens of ns; one straight line would be microseconds off."""
    start = utc_to_gps_ns(START)
    stamps = kiwi_stamps(12001.0, 600, start, rate_ramp_hz=0.03)
    model = fit_time_model(stamps, 12001.0, START)
    k = np.arange(0, 600, 7)
    truth = k * FRAME / (12001.0 + 0.03 * (k / 2) / 600)
    modelled = model.gps_seconds_since(start, k * FRAME)
    assert np.max(np.abs(modelled - truth)) < 200e-9  # incl. extrapolation to the ends
    line = np.polyval(np.polyfit(k, truth, 1), k)
    assert np.max(np.abs(line - truth)) > 1e-6  # what a single rate would get wrong
    assert model.sample_rate_spread_hz > 0.005  # the drift shows in the spread
    assert model.timing_rms_ns < 30


def test_inverse_and_json_round_trip():
    start = utc_to_gps_ns(START)
    model = fit_time_model(kiwi_stamps(12001.1, 200, start, jitter_ns=80.0, seed=9), 12001.0, START)
    x = np.array([-500.0, 0.0, 1234.5, 50_000.25, 150_000.0])
    t = model.gps_seconds_since(start, x)
    assert np.allclose(model.sample_index_at(start, t), x, atol=1e-6)
    again = TimeModel.from_json(json.loads(json.dumps(model.to_json())))
    assert again == model
    with pytest.raises(ValueError, match="version"):
        TimeModel.from_json({**model.to_json(), "version": 99})


def test_core_datetime_to_the_nanosecond():
    start = utc_to_gps_ns(START) + 184_109_688  # GPS ns
    model = fit_time_model(kiwi_stamps(12001.0, 200, start), 12001.0, START)
    stamp = model.core_datetime
    assert stamp.startswith("2020-08-13T06:52:20.") and stamp.endswith("Z") and len(stamp) == 30
    assert abs(int(stamp[20:29]) - 184_109_688) <= 2  # ns: tags are whole nanoseconds
    assert model.sample0_utc == START + timedelta(microseconds=184_109)
    assert format_utc_ns(0) == "1970-01-01T00:00:00.000000000Z"


@pytest.mark.parametrize("stamps,reason", [
    ([], "0 fresh"),
    ([GpsTimestamp(k * FRAME, 370358, k, False, 255) for k in range(10)], "0 fresh"),
    ([GpsTimestamp(k * FRAME, 370358, k * 42_000_000, True, 2) for k in range(10)], "0 fresh"),
    ([GpsTimestamp(k * FRAME, 370358, k * 42_662_812, True, 0) for k in range(3)], "span"),
])
def test_untimed_captures_say_why(stamps, reason):
    with pytest.raises(UntimedCaptureError, match=reason):
        fit_time_model(stamps, 12001.0, START)


@pytest.mark.parametrize("receiver,low,high", [("HB9ODP", 12001.0, 12001.2), ("JO51xl", 12001.0, 12001.2),
                                               ("pa0rdt", 12001.0, 12001.2)])
def test_real_dcf77_time_models(receiver, low, high):
    rec = read_kiwi_wav(DCF77_DIR / f"20200813T065220Z_77500_{receiver}_iq.wav")
    model = fit_time_model(rec.timestamps, rec.header_rate_hz, rec.name.start_utc, len(rec.samples))
    assert low < model.sample_rate_hz < high
    assert model.sample_rate_spread_hz < 0.01
    assert model.timing_rms_ns < 200
    assert model.fresh_fixes > 150
    assert model.core_datetime.startswith("2020-08-13T06:52:2")
    # sample 0 lies before the first tagged frame by the samples in between
    first = next(s for s in rec.timestamps if s.has_solution and s.fix_age_s == 0 and s.sample_index > 2 * 512)
    t_first = (2118 * 604_800 + first.gps_seconds) * NS + first.gps_nanoseconds
    assert abs(t_first - model.sample0_gps_ns - first.sample_index / model.sample_rate_hz * NS) < 1000
    if receiver == "HB9ODP":
        assert model.rejected_fixes == 1  # its second frame claims a time 3 hours early
