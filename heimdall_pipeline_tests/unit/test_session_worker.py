"""The session worker's hand-over, with a worker serving a small command instead of `cli.main`:
the command's output reaches the caller's own stdout, its exit status is the caller's, signals are
passed on, a killed caller takes its child with it, and a stale or differently configured worker
is not used. Real processes and sockets; the integration tests run real sessions through it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from heimdall_pipeline.services.common import pid_alive

WORKER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from heimdall_pipeline.session_worker import serve

    def command(argv):
        # session run <what> <file>: writes its pid to the file, then does what it is asked
        what, marker = argv[2], Path(argv[3])
        marker.write_text(f"{os.getpid()} {os.getcwd()} {os.environ.get('PROBE')}")
        print(f"child says {what}", flush=True)
        if what == "exit":
            return 7
        if what == "raise":
            raise RuntimeError("boom in the child")
        time.sleep(60)
        return 0

    serve(Path(sys.argv[1]), command, lambda: None)
""")

CLIENT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from heimdall_pipeline import session_worker
    if sys.argv[3] == "stale":
        session_worker.code_fingerprint = lambda: "not the worker's"
    code = session_worker.forward(["session", "run", sys.argv[2], sys.argv[4]], Path(sys.argv[1]))
    print("in-process" if code is None else f"forwarded {code}", flush=True)
    sys.exit(0 if code is None else code)
""")


@pytest.fixture()
def worker(tmp_path):
    socket_path = tmp_path / "w.sock"
    process = subprocess.Popen([sys.executable, "-c", WORKER, str(socket_path)], start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while not socket_path.exists():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "the worker did not come up"
        time.sleep(0.05)
    yield socket_path, process
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def client(socket_path: Path, what: str, marker: Path, *, stale: bool = False, env: dict | None = None,
           wait: bool = True):
    args = [sys.executable, "-c", CLIENT, str(socket_path), what, "stale" if stale else "fresh", str(marker)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PROBE": "from-the-client", **(env or {})}, cwd=marker.parent)
    if wait:
        out, err = process.communicate(timeout=60)
        return process.returncode, out, err
    return process


def child_pid(marker: Path) -> int:
    deadline = time.monotonic() + 30
    while not marker.exists() or not marker.read_text():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    return int(marker.read_text().split()[0])


def wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while pid_alive(pid):
        assert time.monotonic() < deadline, f"process {pid} is still alive"
        time.sleep(0.05)


def test_the_child_writes_to_the_callers_stdout_in_its_folder_and_environment(worker, tmp_path):
    code, out, err = client(worker[0], "exit", tmp_path / "marker")
    assert code == 7
    assert out.splitlines() == ["child says exit", "forwarded 7"]
    pid, cwd, probe = (tmp_path / "marker").read_text().split()
    assert int(pid) not in (worker[1].pid, os.getpid())
    assert (cwd, probe) == (str(tmp_path), "from-the-client")


def test_an_exception_in_the_child_is_printed_and_fails_the_command(worker, tmp_path):
    code, out, err = client(worker[0], "raise", tmp_path / "marker")
    assert code == 1
    assert "RuntimeError: boom in the child" in err


def test_ctrl_c_reaches_the_child(worker, tmp_path):
    process = client(worker[0], "sleep", tmp_path / "marker", wait=False)
    pid = child_pid(tmp_path / "marker")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, (out, err)
    assert "KeyboardInterrupt" in err
    wait_gone(pid)


def test_a_killed_caller_takes_its_child_with_it(worker, tmp_path):
    process = client(worker[0], "sleep", tmp_path / "marker", wait=False)
    pid = child_pid(tmp_path / "marker")
    process.kill()
    process.wait()
    wait_gone(pid)
    assert worker[1].poll() is None  # the worker itself goes on


def test_stale_code_runs_in_process_and_the_worker_reloads(worker, tmp_path):
    socket_path, process = worker
    code, out, _ = client(socket_path, "exit", tmp_path / "marker", stale=True)
    assert (code, out.strip()) == (0, "in-process")
    assert not (tmp_path / "marker").exists()
    # the same process loads the code again and serves the next command
    deadline = time.monotonic() + 30
    while True:
        code, out, _ = client(socket_path, "exit", tmp_path / "marker")
        if code == 7 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert code == 7 and process.poll() is None


def test_other_import_time_variables_run_in_process(worker, tmp_path):
    code, out, _ = client(worker[0], "exit", tmp_path / "marker", env={"OMP_NUM_THREADS": "17"})
    assert (code, out.strip()) == (0, "in-process")


def test_the_switch_and_other_commands_run_in_process(worker, tmp_path):
    code, out, _ = client(worker[0], "exit", tmp_path / "marker", env={"HEIMDALL_SESSION_WORKER": "off"})
    assert (code, out.strip()) == (0, "in-process")
    from heimdall_pipeline.session_worker import forward

    assert forward(["session", "request", "--frequency", "1"], worker[0]) is None
    assert forward(["session", "run", "k"], tmp_path / "no-such.sock") is None


def test_a_dead_workers_socket_runs_in_process(tmp_path):
    """A worker killed with SIGKILL leaves its socket file: nobody answers, the command runs itself."""
    import socket

    from heimdall_pipeline.session_worker import forward

    path = tmp_path / "dead.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.close()  # the file stays, nothing listens
    assert path.exists()
    assert forward(["session", "run", "k"], path) is None


IDLE_WORKER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from heimdall_pipeline import session_worker

    # "the code": a file the test rewrites, as an edit or an install changes the package
    session_worker.code_fingerprint = lambda: Path(sys.argv[2]).read_text()
    session_worker.serve(Path(sys.argv[1]), lambda argv: 0, lambda: None)
""")


def test_an_idle_worker_reloads_changed_code_without_waiting_for_a_command(tmp_path):
    import queue
    import threading

    from heimdall_pipeline.session_worker import CODE_CHECK_S

    socket_path, code = tmp_path / "w.sock", tmp_path / "code"
    code.write_text("version 1")
    process = subprocess.Popen([sys.executable, "-c", IDLE_WORKER, str(socket_path), str(code)],
                               start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.strip()) for line in process.stdout], daemon=True).start()

    def next_line(timeout_s: float) -> str:
        try:
            return lines.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError(f"the worker said nothing for {timeout_s} s") from None

    try:
        assert next_line(30).endswith(f"{process.pid}: ready on {socket_path}")
        code.write_text("version 2")
        assert next_line(CODE_CHECK_S + 5).endswith(f"{process.pid}: the code changed, reloading")
        assert next_line(30).endswith(f"{process.pid}: ready on {socket_path}")  # the same process, warm again
        with pytest.raises(AssertionError, match="said nothing"):  # unchanged code: it stays as it is
            next_line(2.5 * CODE_CHECK_S)
        assert process.poll() is None
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
