"""Helpers shared by the embedded services: ports, processes, secrets. No Dagster."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path


class ServiceError(RuntimeError):
    """A local service could not be started, checked or stopped; the message says what to do."""


# What the embedded services and the commands create in the runtime folder is readable by its
# owner only: processes started here get this umask, and make_private fixes what exists.
PRIVATE_UMASK = 0o077


def make_private(root: Path) -> None:
    """Every folder under root (root included) 0700 and every file 0600 or less, for what this
    user owns; another OS user's folders (the PostgreSQL cluster's) are that server's to keep."""
    uid = os.geteuid()

    def fix(path: str, folder: bool) -> bool:
        try:
            info = os.lstat(path)
        except FileNotFoundError:  # removed meanwhile (a server's temporary file)
            return False
        if info.st_uid != uid or stat.S_ISLNK(info.st_mode):
            return False
        wanted = 0o700 if folder else stat.S_IMODE(info.st_mode) & 0o700
        if stat.S_IMODE(info.st_mode) != wanted:
            with contextlib.suppress(FileNotFoundError):
                os.chmod(path, wanted)
        return True

    fix(str(root), True)
    for folder, dirs, files in os.walk(root):
        dirs[:] = [name for name in dirs if fix(os.path.join(folder, name), True)]
        for name in files:
            fix(os.path.join(folder, name), False)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_is_listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def require_free_ports(service: str, ports: dict[str, int], env_hint: str) -> None:
    taken = [f"{name} port {port}" for name, port in ports.items() if not port_is_free(port)]
    if taken:
        raise ServiceError(
            f"cannot start {service}: {', '.join(taken)} on 127.0.0.1 already in use by another "
            f"process (another Heimdall instance or service?). Stop it (`ss -ltnp` shows who holds "
            f"the port) or choose other ports with {env_hint}."
        )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
        return state != "Z"
    except (OSError, IndexError):
        return True


def read_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def stop_pid(pid: int, name: str, timeout_s: float = 20.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    if pid_alive(pid):
        raise ServiceError(f"{name} (pid {pid}) did not stop after SIGKILL")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_process_group(process: subprocess.Popen, name: str, timeout_s: float = 20.0) -> None:
    """Stops a process started with start_new_session=True and everything it started (Dagster's
    webserver and daemon start code servers and runs that do not always exit on SIGTERM):
    SIGTERM to the group, then SIGKILL to whatever of the group is left after the grace period."""
    pgid = process.pid  # the session leader's pid is the group id
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (process.poll() is None or _group_alive(pgid)):
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired as exc:
        raise ServiceError(f"{name} (pid {process.pid}) did not stop") from exc


def new_secret(nbytes: int = 24) -> str:
    return secrets.token_urlsafe(nbytes).replace("-", "x").replace("_", "y")


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise ServiceError(f"command failed ({result.returncode}): {' '.join(cmd)}\n{result.stderr.strip()}")
    return result


def log_tail(path: Path, lines: int) -> str:
    """The last lines of a server's log, for an error that says why it did not start."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"({path} unreadable: {exc})"


def wait_until(check, timeout_s: float, what: str, interval_s: float = 0.25):
    """Calls check() until it returns a truthy value or raises after timeout with the last error."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - we report the last failure below
            last = exc
        time.sleep(interval_s)
    raise ServiceError(f"{what} not ready after {timeout_s:.0f}s" + (f": {last}" if last else ""))


def run_until_signalled(cmd: list[str], env: dict[str, str], name: str) -> int:
    """Runs cmd in its own process group until it exits or this process gets SIGTERM/SIGINT; then
    stops the whole group (a Dagster webserver, daemon and code servers) and returns 128 + signal."""
    process = subprocess.Popen(cmd, env=env, start_new_session=True)
    received: list[int] = []

    def on_signal(signum, _frame):
        received.append(signum)
        raise KeyboardInterrupt  # leaves process.wait() below

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return process.wait()
    except KeyboardInterrupt:
        signum = received[0] if received else signal.SIGINT
        print(f"{signal.Signals(signum).name}: stopping {name} (pid {process.pid}) and its children", flush=True)
        stop_process_group(process, name)
        return 128 + signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
