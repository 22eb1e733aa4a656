"""The timing allowance model, the solver's full covariance and the receivers' cross-checks, on
synthetic lags (exact geometry plus drawn offsets and noise), and the GNSS quality verdicts."""

import dataclasses
import itertools

import numpy as np
import pytest

from heimdall_pipeline.dsp.timing import fit_time_model
from heimdall_pipeline.receivers import DEFAULT_RECEIVERS
from heimdall_pipeline.capture import GpsTimestamp
from heimdall_pipeline.tdoa.allowance import KIWISDR_BIAS_BOUND_S, KIWISDR_BIAS_SIGMA_S
from heimdall_pipeline.tdoa.crosscheck import cross_check
from heimdall_pipeline.dsp.gnss_quality import gnss_quality
from heimdall_pipeline.tdoa.solve import PairGeometry, modelled_lags_s, solve
from heimdall_pipeline.dsp.timing import utc_to_gps_ns, NS, SECONDS_PER_WEEK
from datetime import datetime, timezone

MEASUREMENT_S = 0.5e-6


def _pairs(receivers, truth, offsets_s, rng):
    """All pairs' lags for a transmitter at truth, each receiver's clock offset, measurement noise."""
    out = []
    for a, b in itertools.combinations(receivers, 2):
        geometry = PairGeometry(a=(a.latitude, a.longitude), b=(b.latitude, b.longitude), lag_s=0.0,
                                sigma_s=MEASUREMENT_S, ids=(a.id, b.id))
        lag = float(modelled_lags_s([geometry], *truth)[0]) + offsets_s[a.id] - offsets_s[b.id]
        out.append(dataclasses.replace(geometry, lag_s=lag + rng.normal(0.0, MEASUREMENT_S)))
    return out


def _solve(pairs, sigmas):
    return solve(pairs, receivers=len({i for p in pairs for i in p.ids}), receiver_sigmas_s=sigmas)


def test_the_95_percent_region_covers_the_truth_with_offsets_up_to_30_us():
    """200 trials, 4 of the default receivers, offsets uniform within +-30 us: the region (from the
    KiwiSDR allowance) must hold the truth in at least 93 % of them."""
    rng = np.random.default_rng(7)
    receivers = DEFAULT_RECEIVERS[:4]
    lats, lons = [r.latitude for r in receivers], [r.longitude for r in receivers]
    inside, errors = [], []
    for _ in range(200):
        truth = (float(rng.uniform(min(lats), max(lats))), float(rng.uniform(min(lons), max(lons))))
        offsets = {r.id: float(rng.uniform(-KIWISDR_BIAS_BOUND_S, KIWISDR_BIAS_BOUND_S)) for r in receivers}
        sigmas = {r.id: KIWISDR_BIAS_SIGMA_S for r in receivers}
        solution = _solve(_pairs(receivers, truth, offsets, rng), sigmas)
        inside.append(solution.region.contains((solution.latitude, solution.longitude), truth))
        errors.append(np.hypot(*np.subtract(truth, (solution.latitude, solution.longitude))))
    assert np.mean(inside) >= 0.93
    # and the region is not a blanket: without the allowance most trials would miss
    assert 0.0 < np.median(errors) < 1.0  # degrees


def test_three_receivers_are_not_cross_checked():
    rng = np.random.default_rng(1)
    receivers = DEFAULT_RECEIVERS[:3]
    sigmas = {r.id: KIWISDR_BIAS_SIGMA_S for r in receivers}
    pairs = _pairs(receivers, (48.5, 7.5), {r.id: 0.0 for r in receivers}, rng)
    report = cross_check(pairs, _solve(pairs, sigmas), sigmas, lambda s: _solve(s, sigmas))
    assert report["status"] == "unchecked" and "nothing cross-checks" in report["text"]


def test_four_receivers_flag_an_offset_beyond_the_model_without_naming_a_culprit():
    rng = np.random.default_rng(2)
    receivers = DEFAULT_RECEIVERS[:4]
    sigmas = {r.id: KIWISDR_BIAS_SIGMA_S for r in receivers}
    offsets = {r.id: 0.0 for r in receivers} | {receivers[1].id: 400e-6}
    pairs = _pairs(receivers, (48.5, 7.5), offsets, rng)
    solution = _solve(pairs, sigmas)
    report = cross_check(pairs, solution, sigmas, lambda s: _solve(s, sigmas))
    assert report["status"] == "inconsistent" and solution.widened_by > 1.0
    assert "inconsistent_receiver" not in report and "cannot tell" in report["text"]


def test_five_receivers_name_the_one_whose_lags_disagree():
    rng = np.random.default_rng(3)
    receivers = DEFAULT_RECEIVERS[:5]
    sigmas = {r.id: KIWISDR_BIAS_SIGMA_S for r in receivers}
    offsets = {r.id: float(rng.uniform(-10e-6, 10e-6)) for r in receivers} | {receivers[3].id: 300e-6}
    pairs = _pairs(receivers, (48.5, 7.5), offsets, rng)
    report = cross_check(pairs, _solve(pairs, sigmas), sigmas, lambda s: _solve(s, sigmas))
    assert report["status"] == "inconsistent"
    assert report["inconsistent_receiver"] == receivers[3].id
    assert receivers[3].id in report["text"]


def test_consistent_receivers_pass_and_closure_catches_a_wrong_peak():
    rng = np.random.default_rng(4)
    receivers = DEFAULT_RECEIVERS[:5]
    sigmas = {r.id: KIWISDR_BIAS_SIGMA_S for r in receivers}
    offsets = {r.id: float(rng.uniform(-20e-6, 20e-6)) for r in receivers}
    pairs = _pairs(receivers, (48.5, 7.5), offsets, rng)
    report = cross_check(pairs, _solve(pairs, sigmas), sigmas, lambda s: _solve(s, sigmas))
    assert report["status"] == "consistent" and report["worst_closure_us"] < 5 * MEASUREMENT_S * 1e6 * 2
    pairs[0] = dataclasses.replace(pairs[0], lag_s=pairs[0].lag_s + 50e-6)  # one pair's peak off by 50 us
    report = cross_check(pairs, _solve(pairs, sigmas), sigmas, lambda s: _solve(s, sigmas))
    assert report["status"] == "inconsistent" and "do not close" in report["text"]


T0 = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)


def _stamps(n_frames, fresh_every=1, rate=12000.0, jitter_ns=20.0, zero_at=(), jump_at=(), seed=0):
    rng = np.random.default_rng(seed)
    start = utc_to_gps_ns(T0)
    out = []
    for f in range(n_frames):
        index = f * 512
        tag = start + int(round(index / rate * NS + rng.normal(0, jitter_ns)))
        if f in jump_at:
            tag += 5 * 3600 * NS
        sow = tag % (SECONDS_PER_WEEK * NS)
        seconds, nanos = (0, 0) if f in zero_at else (sow // NS, sow % NS)
        age = 0 if f % fresh_every == 0 else 1
        out.append(GpsTimestamp(sample_index=index, gps_seconds=seconds, gps_nanoseconds=nanos,
                                has_solution=(seconds, nanos) != (0, 0), fix_age_s=age))
    return out


def _quality(stamps, n_frames):
    model = fit_time_model(stamps, 12000.0, T0, n_frames * 512)
    return gnss_quality(stamps, model, None, n_frames * 512, 12000.0)


def test_gnss_quality_of_a_clean_capture_is_ok():
    q = _quality(_stamps(400, fresh_every=3), 400)
    assert q.severity == "ok" and q.usable_for_tdoa and q.fresh_fixes == 134


def test_gnss_quality_names_zero_headers_and_jumps_of_hours():
    q = _quality(_stamps(400, zero_at=(0, 50), jump_at=(70,)), 400)
    assert q.zero_timestamps == 1  # the first frame's missing time is by design, not a rejection
    assert q.jumped_timestamps == 1 and q.severity == "warn" and q.usable_for_tdoa


def test_gnss_quality_long_gap_between_fixes_is_an_error():
    stamps = _stamps(400)
    stamps = [s if not 20 <= i < 300 else dataclasses.replace(s, fix_age_s=5) for i, s in enumerate(stamps)]
    q = _quality(stamps, 400)
    assert q.severity == "error" and not q.usable_for_tdoa
    assert q.longest_fix_gap_s == pytest.approx(280 * 512 / 12000.0, rel=0.01)
    assert any("longest gap" in p for p in q.problems)


def test_gnss_quality_of_an_untimed_capture():
    stamps = [GpsTimestamp(sample_index=i * 512, gps_seconds=0, gps_nanoseconds=0, has_solution=False, fix_age_s=255)
              for i in range(10)]
    assert gnss_quality(stamps, None, "0 fresh GNSS fix(es)", 51200, 12000.0).severity == "error"
    assert gnss_quality(stamps, None, "0 fresh GNSS fix(es)", 5120, 12000.0).severity == "ok"  # 0.4 s: no use to TDoA
    imported = gnss_quality(stamps, None, None, 51200, 12000.0, imported_untimed=True)
    assert imported.severity == "warn" and "imported untimed" in imported.untimed_reason
