"""A job whose op writes to stdout and stderr from Python, from its file descriptor and from a child
process, run in its own process by test_compute_logs.py (so its output streams are real pipes)."""

import os
import subprocess
import sys

from dagster import DagsterInstance, execute_job, in_process_executor, job, op, reconstructable

# every process started in this process, to show that capturing the output starts none
started: list[str] = []
_popen_init = subprocess.Popen.__init__


def _recording_init(self, args, *rest, **options):
    started.append(args if isinstance(args, str) else " ".join(map(str, args)))
    _popen_init(self, args, *rest, **options)


subprocess.Popen.__init__ = _recording_init
CHILD = "echo child says out; echo child says err >&2"


@op
def talk():
    print("python says out", flush=True)
    print("python says err", file=sys.stderr, flush=True)
    os.write(1, b"descriptor says out\n")
    subprocess.run(["sh", "-c", CHILD], check=True)


@job(executor_def=in_process_executor)  # as session_job: the run's process captures its output
def talking():
    talk()


if __name__ == "__main__":
    with DagsterInstance.get() as instance:
        result = execute_job(reconstructable(talking), instance)
        print(f"RESULT {result.success} {result.run_id} {type(instance.compute_log_manager).__name__}", flush=True)
        print(f"STARTED {[args for args in started if CHILD not in args]}", flush=True)
