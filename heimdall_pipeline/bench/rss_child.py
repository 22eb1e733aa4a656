"""Child process of the peak-RSS figure: one fresh process per measurement, so no memory freed by
an earlier measured session can be reused by the next one and hide what it needs.

In the child (Linux):
1. imports, the engine and a Dagster instance; ``rss_after_imports`` = VmRSS.
2. a warm-up session with tiny captures: the one-time costs of the first run in a process
   (botocore's S3 model, OpenBLAS buffers, matplotlib fonts, Dagster plan construction) land
   here; ``warmup_peak_kb`` = VmHWM afterwards. Tiny data leaves almost no freed heap behind.
3. the kernel's high-water mark is reset (``echo 5 > /proc/self/clear_refs``), VmRSS read, the
   measured session run end to end, VmHWM read: the difference is the peak memory it added.

The session runs through runner.run_session (what ``heimdall main`` and ``heimdall session run``
use): execute_job on a persistent (temporary) instance, as a run worker executes a run the daemon
launched, so each step's output is released once its IO manager has stored it.

Usage: python -m heimdall_pipeline.bench.rss_child WARMUP_KEY KEY
Prints one line: RSS_JSON {...}
"""

from __future__ import annotations

import json
import os
import sys
import warnings

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


def main(warmup_key: str, key: str) -> int:
    warnings.filterwarnings("ignore")
    import logging

    from heimdall_pipeline import settings

    settings.load_embedded_env()
    from dagster import DagsterInstance

    import heimdall_pipeline.definitions  # noqa: F401 - the code location is loaded before a run, as in a run worker
    from heimdall_pipeline.resources import build_resources
    from heimdall_pipeline.runner import run_session

    logging.getLogger("dagster").setLevel(logging.WARNING)
    engine = build_resources(os.environ)["database"].engine()
    with DagsterInstance.local_temp() as instance:
        out: dict = {"rss_after_imports_kb": _status_kb("VmRSS")}
        warmed = run_session(instance, engine, warmup_key).success
        out["warmup_peak_kb"] = _status_kb("VmHWM")
        _reset_peak()
        out["rss_before_kb"] = _status_kb("VmRSS")
        measured = run_session(instance, engine, key).success
        out["peak_kb"] = _status_kb("VmHWM")
        out["rss_after_kb"] = _status_kb("VmRSS")
        out["success"] = bool(warmed and measured)
    print("RSS_JSON " + json.dumps(out))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m heimdall_pipeline.bench.rss_child WARMUP_KEY KEY")
    sys.exit(main(*sys.argv[1:]))
