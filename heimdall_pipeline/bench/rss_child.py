"""Child process of the peak-RSS figure: one fresh process per measurement, so no memory freed by
an earlier measured session can be reused by the next one and hide what it needs.

In the child (Linux):
1. imports, the engine and a Dagster instance; ``rss_after_imports`` = VmRSS.
2. a warm-up session with tiny captures: the one-time costs of the first run in a process
   (botocore's S3 model, OpenBLAS buffers, matplotlib fonts, Dagster plan construction) land
   here; ``warmup_peak_kb`` = VmHWM afterwards. Tiny data leaves almost no freed heap behind.
3. the kernel's high-water mark is reset (``echo 5 > /proc/self/clear_refs``), VmRSS read, the
   measured session run end to end, VmHWM read: the difference is the peak memory it added.

Two ways to run the session's jobs:
* ``worker``: ``execute_job`` on a persistent (temporary) instance, as a run worker executes a
  run the daemon launched: a step's output is released once its IO manager has stored it.
* ``in_process``: ``runner.run_session`` (``execute_in_process``, used by ``heimdall main`` and
  the tests), which keeps every step output for its result object until the run ends.

Usage: python -m heimdall_pipeline.bench.rss_child worker|in_process WARMUP_KEY KEY
Prints one line: RSS_JSON {...}
"""

from __future__ import annotations

import json
import os
import sys
import warnings

PATHS = ("worker", "in_process")


def job_named(name: str):
    """Reconstructs a job of the definitions (execute_job needs a reconstructable job)."""
    from heimdall_pipeline.definitions import defs

    return defs.resolve_job_def(name)


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}: the RSS figure needs Linux")


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError as exc:
        raise RuntimeError(f"cannot reset the peak RSS counter (/proc/self/clear_refs): {exc}") from exc


def main(path: str, warmup_key: str, key: str) -> int:
    warnings.filterwarnings("ignore")
    import logging

    from heimdall_pipeline import settings

    settings.load_embedded_env()
    from dagster import DagsterInstance, build_reconstructable_job, execute_job

    from heimdall_pipeline.db.engine import make_engine
    from heimdall_pipeline.definitions import defs
    from heimdall_pipeline.runner import run_session, session_runs

    logging.getLogger("dagster").setLevel(logging.WARNING)
    engine = make_engine(os.environ["HEIMDALL_DATABASE_URL"])

    def run(instance, session_key: str) -> bool:
        if path == "in_process":
            return run_session(defs, instance, engine, session_key).success
        success = True
        for job_name, tags in session_runs(instance, engine, session_key):
            job = build_reconstructable_job(__name__ if __name__ != "__main__" else "heimdall_pipeline.bench.rss_child",
                                            "job_named", reconstructable_args=(job_name,))
            with execute_job(job, instance, tags=tags) as result:
                success = success and result.success
        return success

    instance_cm = DagsterInstance.ephemeral() if path == "in_process" else DagsterInstance.local_temp()
    with instance_cm as instance:
        out: dict = {"path": path, "rss_after_imports_kb": _status_kb("VmRSS")}
        warmed = run(instance, warmup_key)
        out["warmup_peak_kb"] = _status_kb("VmHWM")
        _reset_peak()
        out["rss_before_kb"] = _status_kb("VmRSS")
        measured = run(instance, key)
        out["peak_kb"] = _status_kb("VmHWM")
        out["rss_after_kb"] = _status_kb("VmRSS")
        out["success"] = bool(warmed and measured)
    print("RSS_JSON " + json.dumps(out))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in PATHS:
        sys.exit("usage: python -m heimdall_pipeline.bench.rss_child worker|in_process WARMUP_KEY KEY")
    sys.exit(main(*sys.argv[1:]))
