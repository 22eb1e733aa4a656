"""Every session gets its analysis through the daemon, exactly once, like `heimdall session run`.

A real dagster-daemon (what `heimdall dev` runs beside the UI) on a private PostgreSQL-backed
instance and a scratch heimdall database: a requested session is launched by
session_request_sensor, its capture run is followed by ONE session_analysis_job run launched by
session_analysis_sensor, and it ends with the same rows (session_captures, measurements,
localizations) and the same objects as a session run by the CLI path (`runner.run_session`), whose
own analysis the sensor leaves alone. No timing is asserted (the deadline only stops a hung daemon).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from heimdall_pipeline_tests.integration.db_fixtures import scratch_database

RECEIVERS = ["f5len", "g0mjw", "hb9sl"]  # not neighbours in the registry


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


def test_a_sensor_launched_session_ends_like_a_cli_session(embedded_services, s3_client, monkeypatch):
    from dagster import DagsterInstance, RunsFilter

    from heimdall_pipeline import settings
    from heimdall_pipeline.bench.scale import private_dagster_home
    from heimdall_pipeline.db.receivers_repo import seed_default_receivers
    from heimdall_pipeline.db.sessions_repo import get_session
    from heimdall_pipeline.runner import run_session
    from heimdall_pipeline.services.common import stop_process_group
    from heimdall_pipeline.session_requests import request_session

    bucket = os.environ["HEIMDALL_S3_BUCKET"]
    tag = os.urandom(3).hex()
    with scratch_database(timescaledb=True) as engine, private_dagster_home("heimdall_analysis") as (home, _):
        seed_default_receivers(engine)
        url = engine.url.render_as_string(hide_password=False)
        monkeypatch.setenv("HEIMDALL_DATABASE_URL", url)
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        fields = dict(requested_by="test", center_frequency_hz=7.1e6, duration_s=1.0, receiver_ids=RECEIVERS,
                      source_kind="simulated")
        by_sensor, by_cli = f"ds{tag}", f"dc{tag}"
        request_session(engine, session_key=by_sensor, **fields)
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
                    runs = analysis_runs(by_sensor)
                    origin = _sensor_origin(instance, "session_analysis_sensor")  # None until its first tick
                    ticks = instance.get_ticks(*origin, limit=50) if origin else []
                    ticked_after_cli = any(t.timestamp > cli_ended + 1 and t.status.value in ("SUCCESS", "SKIPPED")
                                           for t in ticks)
                    if runs and all(run.is_finished for run in runs) and ticked_after_cli \
                            and get_session(engine, by_sensor).status == "succeeded":
                        break
                    if time.monotonic() > deadline:
                        pytest.fail(f"sensor session not analysed: {get_session(engine, by_sensor)}; daemon log:\n"
                                    + (home / "daemon.log").read_text()[-3000:])
                    time.sleep(2)
                capture_runs = instance.get_runs(RunsFilter(job_name="session_job", tags={"heimdall/session": by_sensor}))
                assert len(capture_runs) == 1 and capture_runs[0].tags["dagster/sensor_name"] == "session_request_sensor"
                [analysis] = analysis_runs(by_sensor)
                assert analysis.is_success and analysis.tags["heimdall/analysis_of"] == capture_runs[0].run_id
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


def _sensor_origin(instance, name: str) -> tuple[str, str] | None:
    """(origin id, selector id) of a sensor the daemon has ticked (what get_ticks takes), else None."""
    state = next((s for s in instance.all_instigator_state() if s.name == name), None)
    return None if state is None else (state.instigator_origin_id, state.selector_id)
