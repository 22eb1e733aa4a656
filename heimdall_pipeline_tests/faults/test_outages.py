"""Services down or dying under the CLI and the daemon (#21), on a PRIVATE SeaweedFS + PostgreSQL:

- every command with a service down prints one line naming the service and the reason, exit 2;
- S3 killed mid `heimdall session run`: one line, exit 2, and the session failed with the true cause;
- PostgreSQL killed under a run of `heimdall dev`'s daemon: the run and its session are failed
  within 60 s (the run's worker is gone), not after the run's max runtime;
- `heimdall session run` reconciles before it refuses a session whose runs have all ended;
- what a session leaves in the runtime folder is readable by its owner only.
"""

from __future__ import annotations

import os
import pwd
import signal
import stat
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from heimdall_pipeline import cli
from heimdall_pipeline.db.sessions_repo import claim_launch, get_session
from heimdall_pipeline.definitions import defs
from heimdall_pipeline.tags import LAUNCH_TAG, SESSION_TAG
from heimdall_pipeline.run_workers import WORKER_TAG, process_identity
from heimdall_pipeline.services.common import port_is_free
from heimdall_pipeline_tests.data import DCF77_DIR
from heimdall_pipeline_tests.dev_server import (
    VENV_BIN, descendants, free_port, start_heimdall_dev, wait_for_webserver, wait_until,
)
from heimdall_pipeline_tests.faults.conftest import _env, request

pytestmark = pytest.mark.faults

DCF77_FILE = DCF77_DIR / "20200813T065220Z_77500_HB9ODP_iq.wav"


@pytest.fixture()
def private_cli(private_services, monkeypatch):
    """The CLI's environment pointed at the private services (and their runtime folder)."""
    for name, value in private_services.env.items():
        monkeypatch.setenv(name, value)
    return private_services


@pytest.fixture(scope="module")
def private_instance(private_services):
    with _env(private_services.env):
        instance = DagsterInstance.get()  # creates the instance's schema once
    yield instance
    instance.dispose()


def heimdall(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_naming(err: str, service: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith("heimdall")]
    assert len(lines) == 1 and service in lines[0], err
    assert "Traceback" not in err


def recording_run(instance, session_key: str):
    """The session's run once raw_iq has started and tagged its worker."""
    for run in instance.get_runs(RunsFilter(tags={SESSION_TAG: session_key})):
        if WORKER_TAG in run.tags and instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_START):
            return run
    return None


def kill_postgres(postgres) -> None:
    """SIGKILL to the postmaster and every backend (a crash, not a shutdown). The postmaster is
    stopped first so it cannot fork a backend after the list is taken: an orphaned backend would
    keep the shared memory attached and the restart would (rightly) be refused."""
    pid = postgres.pid()
    os.kill(pid, signal.SIGSTOP)
    victims = [*descendants(pid), pid]
    for victim in victims:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # gone = reaped, not only dead: a restart refuses while the lock file's pid exists, even as a zombie
    wait_until("the killed PostgreSQL processes to be reaped",
               lambda: not any(os.path.exists(f"/proc/{victim}") for victim in victims), 30, 0.1)


# ----------------------------------------------------------------------------- every command
def test_every_command_with_a_service_down_names_it_in_one_line(private_cli, private_engine, capsys, tmp_path):
    services = private_cli
    key = request(private_engine, receivers=["f5len"]).session_key
    s3_down = [
        ["session", "import", str(DCF77_FILE), "--receivers", str(DCF77_DIR / "receivers.json"), "--key", f"{key}i"],
        ["session", "export", key, "--kiwi-wav", str(tmp_path)],
        ["verify", key],
    ]
    both_down = [
        ["receivers", "list"], ["db", "migrate"], ["session", "request", "--freq", "7.1e6", "--receivers", "f5len"],
        ["session", "run", key], ["session", "import", str(DCF77_FILE), "--receivers", str(DCF77_DIR / "receivers.json")],
        ["session", "export", key, "--kiwi-wav", str(tmp_path)],
        ["session", "archive", "--older-than-days", "1"], ["session", "restore", key], ["verify"],
    ]
    services.s3.stop()
    try:
        for argv in s3_down:
            code, out, err = heimdall(capsys, *argv)
            assert code == 2, (argv, out, err)
            assert_one_line_naming(err, f"S3 at {services.env['HEIMDALL_S3_ENDPOINT_URL']}")
        services.postgres.stop()
        for argv in both_down:
            code, out, err = heimdall(capsys, *argv)
            assert code == 2, (argv, out, err)
            assert_one_line_naming(err, "PostgreSQL" if argv[0] != "verify" else "S3")  # verify asks S3 first
    finally:
        services.postgres.start()
        services.s3.start()
    assert get_session(private_engine, f"{key}i") is None  # the import stored nothing


# ----------------------------------------------------------------------------- S3 dies mid-run
def test_s3_killed_during_session_run_fails_the_session_with_its_cause(private_services, private_engine,
                                                                       private_instance):
    services = private_services
    key = request(private_engine, receivers=["f5len", "ph0m", "g0mjw"], duration_s=20.0).session_key
    env = {**os.environ, **services.env}
    run = subprocess.Popen([str(VENV_BIN / "heimdall"), "session", "run", key], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        wait_until("raw_iq to start", lambda: recording_run(private_instance, key) or run.poll() is not None,
                   180, 0.5)
        os.kill(services.s3.pid(), signal.SIGKILL)
        out, err = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
        wait_until("the killed server's ports to close", lambda: all(
            port_is_free(port) for port in services.s3.all_ports().values()), 30, 0.5)
        services.s3.start()
    assert run.returncode == 2, out + err
    assert_one_line_naming(err, "S3")
    session = get_session(private_engine, key)
    assert session.status == "failed", session
    assert "before its first run" not in session.status_reason
    assert "raw_iq" in session.status_reason or "S3" in session.status_reason, session.status_reason
    assert f"127.0.0.1:{services.env['HEIMDALL_S3_PORT']}" in session.status_reason, session.status_reason
    # the analysis is not started against a lost service
    assert [run.job_name for run in private_instance.get_runs(RunsFilter(tags={SESSION_TAG: key}))] == ["session_job"]


# ----------------------------------------------------------------------------- healing
def test_postgres_killed_under_session_run_heals_within_a_minute(private_services, private_engine,
                                                                 private_instance, tmp_path):
    """`heimdall session run` loses PostgreSQL mid-run: it says so in one line (exit 2) and ends,
    leaving its run STARTED. With `heimdall dev`'s daemon running and the database back, the run
    (its worker is gone) and its session are failed within 60 s of the command's end, not after
    the run's max runtime."""
    services = private_services
    env = {**os.environ, **services.env}
    port = free_port()
    log = tmp_path / "dev.log"
    dev = start_heimdall_dev(port, log, env)
    # scheduled for tomorrow: the sensor leaves it alone, the command runs it now (simulated receivers)
    key = request(private_engine, receivers=["f5len", "ph0m"], duration_s=30.0,
                  scheduled_for=datetime.now(timezone.utc) + timedelta(days=1)).session_key
    cli_run = None
    try:
        wait_for_webserver(f"http://127.0.0.1:{port}", {"heimdall dev": dev}, {"heimdall dev": log}, timeout_s=180)
        cli_run = subprocess.Popen([str(VENV_BIN / "heimdall"), "session", "run", key], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        run = wait_until("raw_iq to start", lambda: recording_run(private_instance, key) or cli_run.poll(), 240, 0.5)
        assert cli_run.poll() is None, cli_run.communicate()
        killed_at = time.monotonic()
        kill_postgres(services.postgres)
        out, err = cli_run.communicate(timeout=120)
        gone_at = time.monotonic()  # the run's worker (this command) is gone: from here, a minute at most
        assert cli_run.returncode == 2, out + err
        assert_one_line_naming(err, "PostgreSQL")
        assert services.postgres.start()
        assert get_session(private_engine, key).status == "launched"  # nobody could record the end

        def healed():
            session = get_session(private_engine, key)
            return session.status == "failed" and session

        session = wait_until("the session to be failed", healed, max(1.0, 60 - (time.monotonic() - gone_at)), 1)
        healed_at = time.monotonic()
        assert private_instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
        assert "worker" in session.status_reason and "gone" in session.status_reason, session.status_reason
        print(f"\nPostgreSQL killed under run {run.run_id}: the command ended {gone_at - killed_at:.1f} s later "
              f"(Dagster's connection retries), session {key} failed {healed_at - gone_at:.1f} s after that")
    finally:
        if cli_run is not None and cli_run.poll() is None:
            cli_run.kill()
        dev.send_signal(signal.SIGTERM)
        try:
            dev.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
        if services.postgres.pid() is None:
            services.postgres.start()


# ----------------------------------------------------------------------------- re-run
def test_session_run_reconciles_before_it_refuses(private_cli, private_engine, private_instance, capsys):
    """A launched session whose only run died with its worker (the process is gone, the run still
    STARTED) is failed by the reconciler when `heimdall session run` starts, then run again; what
    the session leaves in the runtime folder is the owner's only."""
    services = private_cli
    key = request(private_engine, receivers=["f5len"]).session_key
    launch = "cli:died"
    claim_launch(private_engine, key, launch)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_worker = f"{os.uname().nodename}:{process_identity(gone.pid)}"
    gone.wait()
    died = private_instance.create_run_for_job(defs.resolve_job_def("session_job"), status=DagsterRunStatus.STARTED,
                                               tags={SESSION_TAG: key, LAUNCH_TAG: launch, WORKER_TAG: dead_worker})

    code, out, err = heimdall(capsys, "session", "run", key)
    assert code == 0, out + err
    assert f"session {key}: succeeded" in out
    assert private_instance.get_run_by_id(died.run_id).status == DagsterRunStatus.FAILURE

    assert_private(services.home)


def assert_private(home: Path) -> None:
    """No file or folder under the runtime folder grants anything to other users; only the runtime
    folder itself lets the PostgreSQL server's group through (when the server runs as another OS
    user), without listing. One exception, checked for what it is: SeaweedFS rewrites a volume's
    `.vif` (volume version and sizes, no samples) with mode 0644 whatever its umask; it stays in
    the 0700 data folder, which no other user can enter. The volumes (.dat/.idx) are 0600."""
    postgres_gid = pwd.getpwnam("postgres").pw_gid
    opened, volumes = [], []
    for folder, dirs, files in os.walk(home):
        for path in [folder, *(os.path.join(folder, name) for name in dirs + files)]:
            info = os.lstat(path)
            mode = stat.S_IMODE(info.st_mode)
            if path.endswith((".dat", ".idx")):
                volumes.append(path)
            if Path(path) == home and os.geteuid() == 0:
                if (mode, info.st_gid) != (0o710, postgres_gid):
                    opened.append(f"{oct(mode)} group {info.st_gid} {path}")
            elif path.endswith(".vif"):
                if mode & 0o022 or stat.S_IMODE(os.stat(folder).st_mode) & 0o077:
                    opened.append(f"{oct(mode)} {path} (folder {oct(stat.S_IMODE(os.stat(folder).st_mode))})")
            elif mode & 0o077:
                opened.append(f"{oct(mode)} {path}")
    assert any("heimdall-raw-iq" in path for path in volumes), "no SeaweedFS volume of the raw IQ found"
    assert not opened, "\n".join(opened[:30])
