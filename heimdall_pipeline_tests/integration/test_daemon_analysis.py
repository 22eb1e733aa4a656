"""Every session gets its analysis through the daemon, exactly once, like `heimdall session run`.

A real dagster-daemon (what `heimdall dev` runs beside the UI) on a private PostgreSQL-backed
instance and a scratch heimdall database holding 600 receivers: a requested session is launched by
session_request_sensor, its capture run is followed by ONE session_analysis_job run launched by
session_analysis_sensor, and it ends with the same rows (session_captures, measurements,
localizations) and the same objects as a session run by the CLI path (`runner.run_session`), whose
own analysis the sensor leaves alone. Beside it, the three shared DCF77 recordings replayed by
KiwiSDR doubles as live receivers: a session scheduled for a moment is launched by the sensor ahead
of it, records from that instant, and is localized by TDoA within 2 km of Mainflingen, as the CLI's
(test_live_sessions). No timing is asserted (the deadline only stops a hung daemon).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datetime import datetime, timedelta, timezone

from heimdall_pipeline.receivers import Receiver
from heimdall_pipeline_tests.data import DCF77_DIR
from heimdall_pipeline_tests.integration.db_fixtures import scratch_database
from heimdall_pipeline_tests.kiwisdr_server import (
    DCF77_DURATION_S, common_replay_window, dcf77_network, dcf77_session_error_km, replay_start_at,
)

RECEIVERS = ["f5len", "g0mjw", "hb9sl"]  # not neighbours in the registry
REGISTRY_SIZE = 600  # about the public KiwiSDR network


def filler_receivers(count: int) -> list[Receiver]:
    """Simulated receivers that nobody asks for, ids sorting between the ones the sessions use."""
    return [Receiver(id=f"fill{i:03d}", name=f"FILL{i:03d}", url=f"sim://fill{i}", kind="simulated",
                     location_name=f"site {i}", latitude=40.0 + (i % 20), longitude=-5.0 + (i // 20) % 25)
            for i in range(count)]


def session_shape(engine, s3_client, bucket: str, key: str) -> dict:
    """What a finished session holds, without the values that depend on its key (its transmitter)."""
    import sqlalchemy as sa

    from heimdall_pipeline.db.captures_repo import outcomes_for_session
    from heimdall_pipeline.db.measurements_repo import measurements_for_session
    from heimdall_pipeline.db.sessions_repo import get_session

    with engine.connect() as conn:
        methods = sorted(conn.execute(sa.text("SELECT method FROM localizations WHERE session_key = :k"), {"k": key})
                         .scalars())
    listing = s3_client.list_objects_v2(Bucket=bucket, Prefix=f"sessions/{key}/").get("Contents", [])
    return {
        "status": get_session(engine, key).status,
        "captures": sorted((o.receiver_id, o.status, o.bytes) for o in outcomes_for_session(engine, key).values()),
        "measurements": sorted((r.receiver_id, r.signal_detected) for r in measurements_for_session(engine, key)),
        "localizations": methods,
        "objects": sorted(o["Key"].split("/", 2)[-1] for o in listing),
    }


def test_a_sensor_launched_session_ends_like_a_cli_session(embedded_services, s3_client, kiwi_network, monkeypatch):
    from dagster import DagsterInstance, RunsFilter

    from heimdall_pipeline import settings
    from heimdall_pipeline.bench.scale import private_dagster_home
    from heimdall_pipeline.db.receivers_repo import list_receivers, seed_default_receivers
    from heimdall_pipeline.db.sessions_repo import get_session
    from heimdall_pipeline.runner import run_session
    from heimdall_pipeline.services.common import stop_process_group
    from heimdall_pipeline.session_requests import request_session

    bucket = os.environ["HEIMDALL_S3_BUCKET"]
    tag = os.urandom(3).hex()
    with scratch_database(timescaledb=True) as engine, private_dagster_home("heimdall_analysis") as (home, _):
        seed_default_receivers(engine)
        live = dcf77_network(kiwi_network)  # registered here: the scratch database goes with the test
        seed_default_receivers(engine, live)
        seed_default_receivers(engine, filler_receivers(REGISTRY_SIZE - len(live) - 7))
        assert len(list_receivers(engine, active_only=True)) == REGISTRY_SIZE
        url = engine.url.render_as_string(hide_password=False)
        monkeypatch.setenv("HEIMDALL_DATABASE_URL", url)
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        fields = dict(requested_by="test", center_frequency_hz=7.1e6, duration_s=1.0, receiver_ids=RECEIVERS,
                      source_kind="simulated")
        by_sensor, by_cli = f"ds{tag}", f"dc{tag}"
        request_session(engine, session_key=by_sensor, **fields)
        # scheduled well after the daemon's start-up (the sensor launches it LAUNCH_LEAD ahead),
        # inside one loop of the replay
        live_key = f"dl{tag}"
        at = replay_start_at(common_replay_window(sorted(DCF77_DIR.glob("*_iq.wav"))),
                             datetime.now(timezone.utc) + timedelta(seconds=75), DCF77_DURATION_S, slack_s=8.0)
        request_session(engine, session_key=live_key, requested_by="test", center_frequency_hz=77500.0,
                        duration_s=DCF77_DURATION_S, receiver_ids=[r.id for r in live], scheduled_for=at)
        env = {**os.environ, "DAGSTER_GRPC_TIMEOUT_SECONDS": "300"}
        log = open(home / "daemon.log", "wb")
        daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(settings.REPO_ROOT / "workspace.yaml")],
            env=env, cwd=settings.REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            with DagsterInstance.from_config(str(home)) as instance:
                # the CLI path meanwhile, in this process on the same instance
                request_session(engine, session_key=by_cli, **fields)
                cli = run_session(instance, engine, by_cli)
                assert cli.status == "succeeded"
                cli_ended = time.time()

                def analysis_runs(key: str) -> list:
                    return instance.get_runs(RunsFilter(job_name="session_analysis_job", tags={"heimdall/session": key}))

                deadline = time.monotonic() + 600
                while True:
                    assert daemon.poll() is None, (home / "daemon.log").read_text()[-3000:]
                    origin = _sensor_origin(instance, "session_analysis_sensor")  # None until its first tick
                    ticks = instance.get_ticks(*origin, limit=50) if origin else []
                    ticked_after_cli = any(t.timestamp > cli_ended + 1 and t.status.value in ("SUCCESS", "SKIPPED")
                                           for t in ticks)
                    statuses = {key: get_session(engine, key).status for key in (by_sensor, live_key)}
                    assert "failed" not in statuses.values(), {key: get_session(engine, key) for key in statuses}
                    analysed = all(runs and all(run.is_finished for run in runs)
                                   for runs in map(analysis_runs, statuses))
                    if analysed and ticked_after_cli and set(statuses.values()) == {"succeeded"}:
                        break
                    if time.monotonic() > deadline:
                        pytest.fail(f"sensor sessions not analysed: {statuses}; daemon log:\n"
                                    + (home / "daemon.log").read_text()[-3000:])
                    time.sleep(2)
                for key in (by_sensor, live_key):  # one capture run and one analysis run each
                    [capture] = instance.get_runs(RunsFilter(job_name="session_job", tags={"heimdall/session": key}))
                    assert capture.tags["dagster/sensor_name"] == "session_request_sensor"
                    [analysis] = analysis_runs(key)
                    assert analysis.is_success and analysis.tags["heimdall/analysis_of"] == capture.run_id
                    assert analysis.tags["dagster/sensor_name"] == "session_analysis_sensor"
                # the CLI's session: its own analysis run only, none added by the sensor
                assert [run.run_id for run in analysis_runs(by_cli)] == [cli.analysis_run_id]
        finally:
            stop_process_group(daemon, "dagster-daemon", timeout_s=30)
            log.close()

        sensor_shape = session_shape(engine, s3_client, bucket, by_sensor)
        assert sensor_shape == session_shape(engine, s3_client, bucket, by_cli)
        assert sensor_shape["status"] == "succeeded" and len(sensor_shape["captures"]) == len(RECEIVERS)
        assert sensor_shape["localizations"], "no localization stored"
        assert "localization.png" in " ".join(sensor_shape["objects"])
        error_km = dcf77_session_error_km(engine, live_key, live, at)
        print(f"DCF77 through the daemon among {REGISTRY_SIZE} receivers: {error_km:.2f} km from Mainflingen")
        assert error_km <= 2.0, error_km


def _sensor_origin(instance, name: str) -> tuple[str, str] | None:
    """(origin id, selector id) of a sensor the daemon has ticked (what get_ticks takes), else None."""
    state = next((s for s in instance.all_instigator_state() if s.name == name), None)
    return None if state is None else (state.instigator_origin_id, state.selector_id)
