"""Step output (stdout/stderr) captured to files as Dagster's LocalComputeLogManager does, in the
same folders, so the UI shows it the same way, but copied to the process's own output by a thread.

Dagster's manager copies each captured stream with a `tail -F` process and a Python process that
kills the tail if the run's process dies: four processes started and stopped per run, ~0.13 s of
every `heimdall session run` (two runs) on this machine (docs/benchmark.md). A thread ends with its
process, so nothing is left behind when a run's process is killed. dagster.yaml names this class
(`compute_logs:`); `base_dir` defaults to Dagster's own default, `$DAGSTER_HOME/storage`.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from dagster import Field, StringSource
from dagster._core.execution.compute_logs import redirect_to_file
from dagster._core.storage.compute_log_manager import CapturedLogContext, ComputeIOType
from dagster._core.storage.local_compute_log_manager import IO_TYPE_EXTENSION, LocalComputeLogManager
from dagster._utils import ensure_file, touch_file

POLL_S = 0.2  # how often the copy looks for new output while a step runs (`tail -F`: 1 s)
FINISH_TIMEOUT_S = 10.0  # a copy blocked on a stalled terminal is abandoned (the file has everything)


class ThreadMirroredComputeLogManager(LocalComputeLogManager):
    @classmethod
    def config_type(cls):
        return {**super().config_type(), "base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        config = dict(config_value)
        if not config.get("base_dir"):
            home = os.environ.get("DAGSTER_HOME")
            if not home:
                raise ValueError("compute_logs: set base_dir, or DAGSTER_HOME for the default $DAGSTER_HOME/storage")
            config["base_dir"] = os.path.join(home, "storage")
        return cls(inst_data=inst_data, **config)

    @contextmanager
    def capture_logs(self, log_key: Sequence[str]) -> Iterator[CapturedLogContext]:
        out_path = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDOUT])
        err_path = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDERR])
        with mirrored_to_file(sys.stdout, out_path), mirrored_to_file(sys.stderr, err_path):
            yield CapturedLogContext(log_key)
        touch_file(self.complete_artifact_path(log_key))  # as Dagster's: the capture is complete


@contextmanager
def mirrored_to_file(stream, path: str) -> Iterator[None]:
    """The stream's file descriptor written to `path` (output of C code and child processes too),
    and what arrives there copied to where the stream went before."""
    ensure_file(path)
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # a stand-in stream (tests): nothing to redirect
        fd = None
    copy = None if fd is None else _FileCopy(path, os.dup(fd))
    try:
        with redirect_to_file(stream, path):
            yield
    finally:
        if copy is not None:
            copy.finish()


class _FileCopy:
    """Copies what is appended to a file, from its size now, to a file descriptor, until finish()
    (which copies the rest first)."""

    def __init__(self, path: str, target_fd: int):
        self._path, self._target_fd = path, target_fd
        self._start = os.path.getsize(path)
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="compute-log-copy", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        with open(self._path, "rb") as source:
            source.seek(self._start)
            while True:
                last = self._finished.wait(POLL_S)
                if not self._copy_available(source) or last:
                    return

    def _copy_available(self, source) -> bool:
        """False once the target refuses (a closed terminal or pipe): the file keeps everything."""
        while chunk := source.read(1 << 16):
            view = memoryview(chunk)
            while view:
                try:
                    view = view[os.write(self._target_fd, view):]
                except OSError:
                    return False
        return True

    def finish(self) -> None:
        self._finished.set()
        self._thread.join(FINISH_TIMEOUT_S)
        if not self._thread.is_alive():  # else it still writes to the descriptor: left open
            os.close(self._target_fd)
