"""The session worker as an embedded service: the warm process that runs `heimdall session run`
in forks of itself (heimdall_pipeline/session_worker.py), started by `heimdall services up` as
`heimdall services worker` and stopped by `down`. Its socket, PID file and log are in the runtime
folder's run/. Commands run in their own process while it is down or still warming up."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from heimdall_pipeline.services.common import PRIVATE_UMASK, read_pid, stop_pid, wait_until

SOCKET_NAME = "session-worker.sock"
# A Unix socket's path is at most 107 bytes: a longer runtime folder has no worker.
MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class SessionWorkerProcess:
    run_dir: Path

    @classmethod
    def of_home(cls, home: Path) -> SessionWorkerProcess:
        """The worker of a runtime folder ($HEIMDALL_HOME)."""
        return cls(run_dir=home / "run")

    @property
    def socket_path(self) -> Path:
        return self.run_dir / SOCKET_NAME

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "session-worker.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "session-worker.log"

    def pid(self) -> int | None:
        return read_pid(self.pid_file)

    def ready(self) -> bool:
        """The worker accepts commands (warm-up done)."""
        if self.pid() is None:
            return False
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(str(self.socket_path))
            return True
        except OSError:
            return False
        finally:
            probe.close()

    def unavailable_reason(self) -> str | None:
        """Why this runtime folder cannot have a worker; None when it can."""
        length = len(os.fsencode(self.socket_path))
        if length > MAX_SOCKET_PATH:
            return (f"its socket {self.socket_path} would be {length} bytes long, over the {MAX_SOCKET_PATH} a Unix "
                    "socket path allows: a shorter HEIMDALL_HOME gives it one")
        return None

    def start(self, env: dict[str, str]) -> bool:
        """Starts the worker unless it runs or cannot (unavailable_reason); does not wait for its
        warm-up (wait_ready does)."""
        if self.pid() is not None or self.unavailable_reason() is not None:
            return False
        self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
            process = subprocess.Popen([sys.executable, "-m", "heimdall_pipeline.cli", "services", "worker"],
                                       env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       umask=PRIVATE_UMASK, start_new_session=True)
        self.pid_file.write_text(f"{process.pid}\n")
        return True

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        wait_until(self.ready, timeout_s, f"the session worker (log: {self.log_file})")

    def stop(self) -> bool:
        pid = self.pid()
        if pid is not None:
            stop_pid(pid, "session worker")
        self.pid_file.unlink(missing_ok=True)
        self.socket_path.unlink(missing_ok=True)
        return pid is not None
