"""The session worker: `heimdall session run` in a fork of a warm process.

A fresh `heimdall session run` spends most of its time loading Dagster, the definitions, scipy and
matplotlib and paying each library's first-use costs (bench `session_cli`). `heimdall services up`
starts one warm process (`heimdall services worker`, services/worker_process.py) that has done
all of that once; the command connects to its Unix socket in the runtime folder and hands over its
arguments, environment, working folder, umask and its stdin/stdout/stderr (SCM_RIGHTS), and the
worker forks a child that runs the same `cli.main` a fresh process would, writing to the
command's own terminal. The child is the run's process (the `heimdall/worker` tag names it):

- signals the command gets (Ctrl-C, SIGTERM, SIGHUP) are passed on to the child;
- if the command dies (SIGKILL), the child kills itself when the socket closes, so its runs end
  with it and the reconciler fails them exactly as it would for an in-process command;
- the exit status is the child's.

The command runs in its own process instead (the same code) whenever the worker cannot serve it
as a fresh process would: HEIMDALL_SESSION_WORKER=off, no worker, the package's files or the
installed packages changed since the worker loaded them (the worker then re-executes itself to load
them for the next command; idle, it notices within CODE_CHECK_S on its own), or a variable read while
modules load differs. No Dagster here.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path

SWITCH = "HEIMDALL_SESSION_WORKER"  # "off": every command runs in its own process
FORWARDED_COMMANDS = (("session", "run"),)
# Read once, while modules load (thread pools, the plotting backend, the import path, the
# allocator): a child of a worker loaded under other values would not behave as a fresh process.
IMPORT_TIME_ENV = ("PYTHONPATH", "PYTHONHASHSEED", "PYTHONMALLOC", "PYTHONWARNINGS", "PYTHONDONTWRITEBYTECODE",
                   "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                   "MPLBACKEND", "MPLCONFIGDIR", "MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "LD_PRELOAD",
                   "LD_LIBRARY_PATH", "TZ", "LANG", "LC_ALL", "LC_CTYPE")
CONNECT_TIMEOUT_S = 2.0
# The worker answers as soon as it has forked (milliseconds); the command gives up far later, so
# that it never runs itself while a child it gave up on runs the same command.
ANSWER_TIMEOUT_S = 30.0
MAX_MESSAGE_BYTES = 4 << 20
# While idle, the worker looks at the code this often (~0.5 ms a look): after an install or an edit it
# reloads on its own, so the next command finds it warm again instead of running in its own process.
CODE_CHECK_S = 2.0
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def code_fingerprint() -> str:
    """What the worker loaded: the interpreter, this package's files (path, size, mtime) and the
    folders packages are installed in (an install or removal changes their mtime)."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256(f"{sys.executable}\0{sys.version}\0{package}".encode())
    for folder, _dirs, files in sorted(os.walk(package)):
        for name in sorted(files):
            if name.endswith(".py"):
                stat = os.stat(os.path.join(folder, name))
                digest.update(f"{folder}/{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    for entry in sys.path:
        if entry.endswith("-packages"):
            try:
                digest.update(f"{entry}\0{os.stat(entry).st_mtime_ns}\n".encode())
            except OSError:
                pass
    return digest.hexdigest()


def import_time_env(env) -> dict[str, str | None]:
    """The variables a child cannot take from the command: IMPORT_TIME_ENV, and AWS_* (boto3's
    default session, whose loaded S3 model the children share, read them when it was made)."""
    names = [*IMPORT_TIME_ENV, *sorted(name for name in env if name.startswith("AWS_"))]
    return {name: env.get(name) for name in names}


def _send(conn: socket.socket, message: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode() + b"\n"
    if fds:
        sent = socket.send_fds(conn, [data], fds)
        data = data[sent:]
    conn.sendall(data)


class _Lines:
    """Newline-delimited JSON messages from a stream socket (file descriptors with the first)."""

    def __init__(self, conn: socket.socket):
        self.conn, self.buffer, self.fds = conn, b"", []

    def receive(self, *, with_fds: int = 0) -> dict | None:
        while b"\n" not in self.buffer:
            if with_fds and not self.fds:
                data, fds, _flags, _addr = socket.recv_fds(self.conn, 65536, with_fds)
                self.fds = list(fds)
            else:
                data = self.conn.recv(65536)
            if not data:
                return None
            self.buffer += data
            if len(self.buffer) > MAX_MESSAGE_BYTES:
                raise ValueError("session worker: message too long")
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)


# --- the command's side --------------------------------------------------------------------------

def forward(argv: list[str], socket_path: Path, env=os.environ) -> int | None:
    """Runs this command in a child of the worker and returns its exit status; None when the worker
    cannot serve it (then the caller runs it itself, nothing having started)."""
    if env.get(SWITCH, "").lower() in ("off", "0", "no", "false"):
        return None
    if not any(tuple(argv[:len(c)]) == c for c in FORWARDED_COMMANDS) or not socket_path.exists():
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(CONNECT_TIMEOUT_S)
        conn.connect(str(socket_path))
        conn.settimeout(ANSWER_TIMEOUT_S)
        _send(conn, {"fingerprint": code_fingerprint(), "import_env": import_time_env(env),
                     "argv": ["heimdall", *argv], "env": dict(env), "cwd": os.getcwd(),
                     "umask": _current_umask()}, [0, 1, 2])
        lines = _Lines(conn)
        answer = lines.receive()
    except (OSError, ValueError):
        conn.close()
        return None
    if not answer or "pid" not in answer:  # refused (stale code, other environment) or gone
        conn.close()
        return None
    conn.settimeout(None)
    return _wait_for_child(conn, lines, int(answer["pid"]))


def _wait_for_child(conn: socket.socket, lines: _Lines, pid: int) -> int:
    passed: list[int] = []

    def pass_on(signum, _frame):
        passed.append(signum)
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    previous = {sig: signal.signal(sig, pass_on) for sig in FORWARDED_SIGNALS}
    try:
        try:
            message = lines.receive()
        except (OSError, ValueError):
            message = None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        conn.close()
    if message is not None and "exit" in message:
        return int(message["exit"])
    if passed:  # the child ended by the signal it was given: so does the command
        signal.signal(passed[-1], signal.SIG_DFL)
        os.kill(os.getpid(), passed[-1])
    print(f"heimdall: the session worker's process {pid} ended without an exit status (killed?)", file=sys.stderr)
    return 1


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- the worker's side ---------------------------------------------------------------------------

def serve(socket_path: Path, run_command: Callable[[list[str]], int], warm: Callable[[], None]) -> None:
    """Warms up, then forks a child per command until SIGTERM. The socket appears only once warm
    (a command that finds no socket runs in its own process); it is the owner's only."""
    warm()
    fingerprint, loaded_env = code_fingerprint(), import_time_env(os.environ)
    if threading.active_count() != 1:  # a fork copies only the forking thread: nothing may hold a lock
        raise RuntimeError(f"session worker: {threading.active_count()} threads after warm-up, need 1")
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    staging = socket_path.with_name(f".{socket_path.name}.{os.getpid()}")
    staging.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(staging))
    os.chmod(staging, 0o600)
    listener.listen(16)
    os.replace(staging, socket_path)

    def stop(_signum, _frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    print(f"session worker {os.getpid()}: ready on {socket_path}", flush=True)
    listener.settimeout(CODE_CHECK_S)  # accepted connections are blocking (_serve_one sets their timeout)
    reload = False
    try:
        while not reload:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                reload = code_fingerprint() != fingerprint
                continue
            reload = _serve_one(conn, listener, fingerprint, loaded_env, run_command) == "reload"
    finally:
        listener.close()
        socket_path.unlink(missing_ok=True)
    # The package changed on disk: load it afresh in this same process (same pid, same PID file).
    print(f"session worker {os.getpid()}: the code changed, reloading", flush=True)
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def _serve_one(conn, listener, fingerprint, loaded_env, run_command) -> str:
    fds: list[int] = []
    try:
        conn.settimeout(CONNECT_TIMEOUT_S)
        lines = _Lines(conn)
        request = lines.receive(with_fds=3)
        fds = lines.fds
        if request is None or len(fds) != 3:
            return "ignored"
        if request.get("fingerprint") != fingerprint:
            _send(conn, {"refused": "the code or installed packages changed since the worker loaded them"})
            return "reload"
        if request.get("import_env") != loaded_env:
            _send(conn, {"refused": "variables read at import differ from the worker's"})
            return "refused"
        sys.stdout.flush(), sys.stderr.flush()
        if os.fork() == 0:
            listener.close()
            _run_child(conn, request, fds, run_command)  # never returns
        return "forked"
    except (OSError, ValueError):
        return "ignored"
    finally:
        for fd in fds:
            os.close(fd)
        conn.close()


def _run_child(conn: socket.socket, request: dict, fds: list[int], run_command) -> None:
    code = 1
    try:
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setpgid(0, 0)  # the worker's group may be signalled (services down); the command may not
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
        for stream in (sys.stdout, sys.stderr):
            stream.reconfigure(line_buffering=stream.isatty())
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        os.umask(int(request["umask"]))
        sys.argv = list(request["argv"])
        conn.settimeout(None)
        _send(conn, {"pid": os.getpid()})
        threading.Thread(target=_die_with_command, args=(conn,), daemon=True, name="command-watch").start()
        code = run_command(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, (int, type(None))):
            print(exc.code, file=sys.stderr)
    except KeyboardInterrupt:
        traceback.print_exc()
        code = 130
    except BaseException:  # noqa: BLE001 - printed as a fresh process would, then the status
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        try:
            _send(conn, {"exit": code})
        except OSError:
            pass
        os._exit(code)


def _die_with_command(conn: socket.socket) -> None:
    """The command is gone (killed): so is its run's process, as if it had run the run itself."""
    try:
        while conn.recv(4096):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGKILL)
