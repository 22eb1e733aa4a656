"""The run queue's limits, exercised for real: dagster-daemon (sensor → QueuedRunCoordinator →
DefaultRunLauncher, one process per run) on a PRIVATE PostgreSQL-backed instance, with one run per
session at a time (heimdall/session, applyLimitPerUniqueValue) and max_concurrent_runs 4.

N sessions (HEIMDALL_QUEUE_SESSIONS, default 12; 1 s, simulated) are requested in a scratch heimdall
database; each records 2 receivers out of a pool where every receiver is shared by 3-4 sessions
and has 2 channels (websdrs.max_channels; the runs lease them: db/leases_repo.py, whose
exclusivity test_network_scale.py checks with concurrent runs). The session_request_sensor
running in the daemon launches them. While they run, the test samples the instance's run records
(starting / started) once a second, and at the end re-computes concurrency from each run's
start/end timestamps. Asserted: never more than 4 runs in progress, one run per session, every
session run succeeded and gave its channels back. No timing is asserted (the 15-minute deadline
only stops a hung daemon).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from heimdall_pipeline_tests.integration.db_fixtures import scratch_database

PER_RECEIVER_LIMIT = 2
MAX_CONCURRENT = 4
POOL_A = ["f5len", "ph0m", "g0mjw"]
POOL_B = ["hb9q", "dk0ghz", "oe3xec", "hb9sl"]

RUN_COORDINATOR = f"""
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: {MAX_CONCURRENT}
    dequeue_interval_seconds: 1
    # Launch the dequeued runs in parallel: a run launch waits for the run process to import the
    # code location (tens of seconds on 2 loaded cores) and would otherwise serialise the queue.
    dequeue_use_threads: true
    dequeue_num_workers: 4
    tag_concurrency_limits:
      - {{key: "heimdall/session", value: {{applyLimitPerUniqueValue: true}}, limit: 1}}
"""


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])  # ends before starts on ties
    best = current = 0
    for _, delta in events:
        current += delta
        best = max(best, current)
    return best


def test_queue_limits_hold_with_the_daemon(embedded_services):
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    from heimdall_pipeline import settings
    from heimdall_pipeline.bench.scale import private_dagster_home
    from heimdall_pipeline.db.models import receiver_leases
    from heimdall_pipeline.db.receivers_repo import seed_default_receivers
    from heimdall_pipeline.receivers import DEFAULT_RECEIVERS
    from heimdall_pipeline.db.sessions_repo import list_sessions
    from heimdall_pipeline.services.common import stop_process_group
    from heimdall_pipeline.session_requests import request_session

    n = int(os.environ.get("HEIMDALL_QUEUE_SESSIONS", "12"))
    with scratch_database(timescaledb=True) as app_engine, \
            private_dagster_home("heimdall_queue", run_coordinator=RUN_COORDINATOR) as (home, _):
        seed_default_receivers(app_engine, [dataclasses.replace(r, max_channels=PER_RECEIVER_LIMIT)
                                            for r in DEFAULT_RECEIVERS])
        tag = uuid.uuid4().hex[:6]
        sessions = {}
        for i in range(n):
            key = f"q{tag}{i:03d}"
            receivers = [POOL_A[i % len(POOL_A)], POOL_B[i % len(POOL_B)]]
            request_session(app_engine, requested_by="test_run_queue", center_frequency_hz=7.1e6, duration_s=1.0,
                            source_kind="simulated", receiver_ids=receivers, session_key=key)
            sessions[key] = receivers

        # DAGSTER_GRPC_TIMEOUT_SECONDS: on 2 shared cores a run launch over gRPC can exceed the 60 s default.
        env = {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_GRPC_TIMEOUT_SECONDS": "300",
               "HEIMDALL_DATABASE_URL": app_engine.url.render_as_string(hide_password=False)}
        log = open(home / "daemon.log", "wb")
        daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(settings.REPO_ROOT / "workspace.yaml")],
            env=env, cwd=settings.REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        in_progress = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
        finished_statuses = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]
        sampled_total = 0
        try:
            with DagsterInstance.from_config(str(home)) as instance:
                deadline = time.monotonic() + 900
                while True:
                    assert daemon.poll() is None, (home / "daemon.log").read_text()[-3000:]
                    active = instance.get_run_records(RunsFilter(statuses=in_progress))
                    sampled_total = max(sampled_total, len(active))
                    # Count queries, not every run record: the poll competes for the CPU with the
                    # runs. A session is done when its status is (the sensor reconciles it once its
                    # run has ended).
                    unfinished = instance.get_runs_count(RunsFilter(
                        job_name="session_job", statuses=[s for s in DagsterRunStatus if s not in finished_statuses]))
                    done = [s for s in list_sessions(app_engine, status=["succeeded", "failed"])
                            if s.session_key in sessions]
                    if len(done) >= n and unfinished == 0:
                        break
                    if time.monotonic() > deadline:
                        pytest.fail(f"only {len(done)}/{n} sessions finished; daemon log:\n"
                                    + (home / "daemon.log").read_text()[-3000:])
                    time.sleep(1.0)

                runs = instance.get_run_records(RunsFilter(job_name="session_job"))
                per_session = collections.Counter(r.dagster_run.tags["heimdall/session"] for r in runs)
                assert per_session == dict.fromkeys(sessions, 1)
                failed = {r.dagster_run.run_id: r.dagster_run.status for r in runs
                          if r.dagster_run.status != DagsterRunStatus.SUCCESS}
                assert not failed, {run_id: [str(e.message) for e in instance.all_logs(run_id)
                                             if e.dagster_event and e.dagster_event.is_failure][:3] for run_id in failed}
                assert {s.session_key: s.status for s in done} == dict.fromkeys(sessions, "succeeded")
                total = max_overlap([(r.start_time, r.end_time) for r in runs])
                with app_engine.connect() as conn:  # every run gave its channels back
                    assert conn.execute(sa.select(sa.func.count()).select_from(receiver_leases)).scalar() == 0
        finally:
            stop_process_group(daemon, "dagster-daemon", timeout_s=30)
            log.close()

        report = (f"{n} sessions: max runs in progress sampled {sampled_total}, session runs overlapping {total}; "
                  f"limit {MAX_CONCURRENT} total")
        print(report)
        assert sampled_total <= MAX_CONCURRENT and total <= MAX_CONCURRENT, report
        # The limit was actually reached (the queue had to hold runs back), else the test proves nothing.
        assert total == MAX_CONCURRENT or sampled_total == MAX_CONCURRENT, report


def _production_instance(home: Path, db_name: str, text: str):
    from dagster import DagsterInstance

    (home / "dagster.yaml").write_text(text)
    return DagsterInstance.from_config(str(home))


def test_production_instance_config_loads_with_docker_launcher(embedded_services, monkeypatch):
    """deploy/dagster.production.yaml is a valid instance config: Dagster validates every section
    and instantiates each class (DockerRunLauncher from dagster-docker, QueuedRunCoordinator,
    S3ComputeLogManager) against a scratch PostgreSQL database."""
    from dagster import DagsterInvalidConfigError, QueuedRunCoordinator
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
    from dagster_docker import DockerRunLauncher

    from heimdall_pipeline import settings
    from heimdall_pipeline.bench.scale import private_dagster_home

    text = (settings.REPO_ROOT / "deploy" / "dagster.production.yaml").read_text()
    with private_dagster_home("heimdall_prodcfg") as (home, db_name):
        monkeypatch.setenv("DAGSTER_PG_DB", db_name)
        monkeypatch.setenv("HEIMDALL_USER_CODE_IMAGE", "registry.example.org/heimdall/user-code:2026.11")
        monkeypatch.setenv("HEIMDALL_DOCKER_NETWORK", "heimdall")
        monkeypatch.setenv("HEIMDALL_COMPUTE_LOGS_BUCKET", "heimdall-compute-logs")
        with _production_instance(home, db_name, text) as instance:
            launcher = instance.run_launcher
            assert isinstance(launcher, DockerRunLauncher)
            assert launcher.image == "registry.example.org/heimdall/user-code:2026.11"
            assert launcher.networks == ["heimdall"]
            assert {"DAGSTER_PG_PASSWORD", "HEIMDALL_S3_SECRET_ACCESS_KEY", "HEIMDALL_DATABASE_URL"} <= set(launcher.env_vars)
            coordinator = instance.run_coordinator
            assert isinstance(coordinator, QueuedRunCoordinator)
            limits = coordinator.get_run_queue_config().tag_concurrency_limits
            assert {"key": "heimdall/session", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits
            assert not [limit for limit in limits if limit["key"].startswith("heimdall/receiver")]
            assert instance.run_monitoring_enabled and instance.run_monitoring_max_runtime_seconds == 7200
            assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
            assert isinstance(instance.compute_log_manager, S3ComputeLogManager)
            instance.get_run_records(limit=1)  # the PostgreSQL storage really answers

        # The validation is real: a misspelt launcher key is refused.
        with pytest.raises(DagsterInvalidConfigError):
            with _production_instance(home, db_name, text.replace("    network:", "    netwrok:")) as instance:
                instance.run_launcher  # noqa: B018
