"""`heimdall session run` as a user runs it, on the embedded services whose session worker the
test session waited for: the session ends exactly as when the command runs in its own process
(HEIMDALL_SESSION_WORKER=off), the run names the worker's child as its process, and a command
killed mid-run takes its run's process with it, so the reconciler fails the session as it would
for a command that ran the run itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from heimdall_pipeline.db.measurements_repo import count_measurements
from heimdall_pipeline.db.sessions_repo import get_session
from heimdall_pipeline.run_workers import WORKER_TAG, worker_gone
from heimdall_pipeline.sensors import reconcile_sessions
from heimdall_pipeline.services.common import pid_alive
from heimdall_pipeline.session_requests import request_session
from heimdall_pipeline.tags import SESSION_TAG

HEIMDALL = str(Path(sys.executable).parent / "heimdall")


def session_runs(instance, session_key):
    return instance.get_runs(RunsFilter(tags={SESSION_TAG: session_key}))


def worker_pid(run) -> int:
    return int(run.tags[WORKER_TAG].rpartition(":")[2].partition("@")[0])


def run_command(session_key: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([HEIMDALL, "session", "run", session_key], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)


def test_a_session_run_through_the_worker_ends_like_one_run_in_process(embedded_services, engine):
    assert embedded_services.session_worker.ready()
    keys = {}
    for path in ("worker", "in-process"):
        keys[path] = request_session(engine, requested_by="test", center_frequency_hz=7.1e6, duration_s=1).session_key
    worker = run_command(keys["worker"])
    alone = run_command(keys["in-process"], HEIMDALL_SESSION_WORKER="off")
    for result in (worker, alone):
        assert result.returncode == 0, result.stderr
    with DagsterInstance.get() as instance:
        runs = {path: session_runs(instance, key) for path, key in keys.items()}
        for path, key in keys.items():
            assert sorted(run.job_name for run in runs[path]) == ["session_analysis_job", "session_job"]
            assert all(run.status == DagsterRunStatus.SUCCESS for run in runs[path])
            # each run starts its resources once, not again after it ended to read outputs back
            assert [len(instance.all_logs(run.run_id, of_type=DagsterEventType.RESOURCE_INIT_STARTED))
                    for run in runs[path]] == [1, 1]
            assert get_session(engine, key).status == "succeeded"
            assert count_measurements(engine, session_key=key) == 7
            # what the command printed: the same lines, the keys and run ids aside
            out = (worker if path == "worker" else alone).stdout
            assert f"session {key}: succeeded" in out and "TimescaleDB table measurements: 7 rows" in out
        # the worker's child ran the runs and is gone; in-process, the command itself was the run's process
        pids = {worker_pid(run) for run in runs["worker"]}
        assert len(pids) == 1 and pids != {embedded_services.session_worker.pid()}
        assert all(worker_gone(run.tags[WORKER_TAG]) for run in runs["worker"] + runs["in-process"])
    assert len(worker.stdout.splitlines()) == len(alone.stdout.splitlines())


def test_a_command_killed_mid_run_takes_its_runs_process_with_it(embedded_services, engine):
    key = request_session(engine, requested_by="test", center_frequency_hz=7.1e6, duration_s=30).session_key
    command = subprocess.Popen([HEIMDALL, "session", "run", key], env=os.environ, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    with DagsterInstance.get() as instance:
        deadline = time.monotonic() + 120
        while True:
            started = [run for run in session_runs(instance, key)
                       if run.job_name == "session_job" and run.status == DagsterRunStatus.STARTED]
            if started:
                break
            assert command.poll() is None and time.monotonic() < deadline, "the session's run never started"
            time.sleep(0.1)
        child = worker_pid(started[0])
        assert child != command.pid and pid_alive(child)
        command.send_signal(signal.SIGKILL)
        command.wait()
        deadline = time.monotonic() + 10
        while pid_alive(child):
            assert time.monotonic() < deadline, "the run's process outlived the killed command"
            time.sleep(0.05)
        reconcile_sessions(instance, engine)
        assert instance.get_run_by_id(started[0].run_id).status == DagsterRunStatus.FAILURE
    assert get_session(engine, key).status == "failed"
