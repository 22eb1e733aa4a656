"""Starting and waiting for Dagster's servers in tests: `heimdall dev` (webserver + daemon on the
embedded instance of a runtime folder), or dagster-webserver and dagster-daemon started apart
(browser tests). One place, so every test starts, waits for and stops them the same way."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import pytest

from heimdall_pipeline.services.common import pid_alive, port_is_free

VENV_BIN = Path(sys.executable).parent


def free_port(first: int = 3300, last: int = 3400) -> int:
    return next(port for port in range(first, last) if port_is_free(port))


def start_heimdall_dev(port: int, log: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen:
    """`heimdall dev --port PORT` in its own process group, its output to `log`."""
    with open(log, "wb") as handle:
        return subprocess.Popen([str(VENV_BIN / "heimdall"), "dev", "--port", str(port)],
                                env=dict(env if env is not None else os.environ), stdout=handle,
                                stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_webserver(base_url: str, processes: Mapping[str, subprocess.Popen], logs: Mapping[str, Path],
                       timeout_s: float = 120) -> None:
    """Until the webserver answers /server_info; raises with the log's tail if a process exits or
    the time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        for name, process in processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}: {tail(logs[name])}")
        try:
            with urllib.request.urlopen(f"{base_url}/server_info", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{base_url} did not answer /server_info within {timeout_s:.0f} s: "
                               + tail(next(iter(logs.values()))))
        time.sleep(1)


def tail(log: Path, size: int = 3000) -> str:
    return log.read_text(errors="replace")[-size:] if log.exists() else "(no log)"


def descendants(pid: int) -> set[int]:
    """Every living process below pid (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def wait_gone(pids: set[int], timeout_s: float) -> set[int]:
    """The pids still alive after up to timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.2)
    return {p for p in pids if pid_alive(p)}


def wait_until(what: str, probe, timeout_s: float = 600, every_s: float = 3.0):
    """Polls probe() until it returns something truthy; fails the test naming `what` and the last value
    (the default time is generous for runs on 2 loaded cores, never asserted on)."""
    deadline, value = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every_s)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}; last: {value!r}")
