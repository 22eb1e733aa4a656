"""Which process runs a Dagster run, and whether it is still alive.

The default run launcher cannot check a run worker's health: a worker that died (killed, or
cut off from PostgreSQL so it could not even record its failure) leaves its run STARTED until run
monitoring's max runtime. So each session run names its worker in the run tag `heimdall/worker`:
the host and the process that executes its steps (the code location's executor is in-process:
the run worker the daemon started, or `heimdall session run` itself), as pid@start-time so a pid
reused by another program never counts. The reconciler (sensors.reconcile_sessions) fails a run
whose worker on this host is gone. No Dagster here.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

WORKER_TAG = "heimdall/worker"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), or None
    when it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields[19]


def process_identity(pid: int) -> str:
    return f"{pid}@{_start_time(pid) or 0}"


def current_worker() -> str:
    """`host:pid@start` of this process."""
    return f"{socket.gethostname()}:{process_identity(os.getpid())}"


def worker_gone(tag: str) -> bool:
    """True when the tag names processes of THIS host and none of them is alive (another host's
    workers are not judged here; the tag may name several, comma-separated)."""
    host, _, processes = tag.rpartition(":")
    if host != socket.gethostname() or not processes:
        return False
    for entry in processes.split(","):
        pid, _, start = entry.partition("@")
        if pid.isdigit() and _start_time(int(pid)) == start:
            return False
    return True
