"""Live receivers record the same moment, through a session's real capture path (raw_iq ->
ReceiverNetwork -> the KiwiSDR client) against KiwiSDR doubles that stream in real time with GNSS
time from the wall clock; and the three shared DCF77 recordings replayed as live receivers are
localized by TDoA through `heimdall session run`."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from dagster import AssetKey, AssetRecordsFilter

from heimdall_pipeline.db.captures_repo import capture_timing, outcomes_for_session
from heimdall_pipeline.db.sessions_repo import get_session
from heimdall_pipeline.session_requests import request_session
from heimdall_pipeline_tests.data import DCF77_DIR
from heimdall_pipeline_tests.kiwisdr_server import (
    DCF77_DURATION_S, common_replay_window, dcf77_network, dcf77_session_error_km, replay_start_at,
)
from heimdall_pipeline_tests.runs import run_session_in_process


def summary_metadata(instance, session_key):
    records = instance.fetch_materializations(AssetRecordsFilter(
        asset_key=AssetKey("session_summary"), asset_partitions=[session_key]), limit=1).records
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def test_seven_live_receivers_record_the_same_moment(defs, instance, engine, session_key, kiwi_network):
    # amplitude 40 plus noise: a plausible SNR for the metrics' checks
    receivers = kiwi_network.add_many(7, prefix="live-kiwi", amplitude=40, noise_dbfs=-70.0)
    kiwi_network.register(engine)
    duration_s = 2.0
    request_session(engine, requested_by="test", session_key=session_key, center_frequency_hz=7.1e6,
                    duration_s=duration_s, receiver_ids=[r.id for r in receivers])
    launched = datetime.now(timezone.utc)
    result = run_session_in_process(defs, instance, engine, session_key)
    assert result.success and result.status == "succeeded", result

    outcomes = outcomes_for_session(engine, session_key)
    assert {rid for rid, o in outcomes.items() if o.status == "stored"} == {r.id for r in receivers}
    starts = sorted(o.start_time for o in outcomes.values())
    # one start instant, at least the kiwisdr connect margin after the launch
    assert starts[0] >= launched + timedelta(seconds=5.0)
    timing = capture_timing(outcomes.values())
    assert timing["first_sample_spread_ms"] <= 50.0, timing
    # every capture overlaps every other for >= 99 % of the duration
    for a in outcomes.values():
        for b in outcomes.values():
            common = (min(a.end_time, b.end_time) - max(a.start_time, b.start_time)).total_seconds()
            assert common >= 0.99 * duration_s, (a.receiver_id, b.receiver_id, common)
    # the session summary shows the spread
    metadata = summary_metadata(instance, session_key)
    assert metadata["first_sample_spread_ms"] == timing["first_sample_spread_ms"]
    assert metadata["captures_common_fraction"] >= 0.99


def test_dcf77_replayed_live_is_localized_by_tdoa_through_the_cli(embedded_services, engine, session_key,
                                                                   kiwi_network, monkeypatch, tmp_path, capsys):
    """Three doubles replay the shared DCF77 recordings as live KiwiSDRs (GNSS time by the wall
    clock, the recordings' moment where "now" falls in their common window); a session at a
    chosen instant, run with `heimdall session run`, finds Mainflingen within 2 km."""
    from heimdall_pipeline import cli

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    receivers = dcf77_network(kiwi_network)
    kiwi_network.register(engine)
    duration_s = DCF77_DURATION_S
    window = common_replay_window(sorted(DCF77_DIR.glob("*_iq.wav")))
    # inside one loop of the replay, with room for a slow launch (the start instant then moves later)
    at = replay_start_at(window, datetime.now(timezone.utc) + timedelta(seconds=10), duration_s, margin_s=0.25,
                         slack_s=8.0)
    assert cli.main(["session", "request", "--freq", "77500", "--duration", str(duration_s), "--key", session_key,
                     "--receivers", ",".join(r.id for r in receivers), "--at", at.isoformat()]) == 0
    assert cli.main(["session", "run", session_key]) == 0, capsys.readouterr()
    assert "first-sample spread" in capsys.readouterr().out
    assert get_session(engine, session_key).status == "succeeded"

    error_km = dcf77_session_error_km(engine, session_key, receivers, at)
    print(f"DCF77 through the CLI: {error_km:.2f} km from Mainflingen")
    assert error_km <= 2.0, error_km
