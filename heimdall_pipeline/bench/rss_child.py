"""Child process of the peak-RSS figure: runs requested sessions end to end through Dagster
(ephemeral instance, in-process) and prints one JSON line with its memory readings.

Method (Linux):
* ``rss_after_imports``: VmRSS once everything is imported, the engine made and the ephemeral
  instance open (before any session).
* cold: the first session; ``ru_maxrss`` (getrusage, the process's high-water mark) minus
  ``rss_after_imports``. This includes one-time costs of the first run in a process (boto3
  client and its service model, matplotlib fonts, Dagster job/plan construction).
* warm: before each further session the kernel's high-water mark is reset
  (``echo 5 > /proc/self/clear_refs``), so ``ru_maxrss`` / VmHWM afterwards is the peak of that
  session alone; minus VmRSS at the reset. This is the memory one session needs in a process
  that has run one before (a daemon, a run worker processing several sessions).

Usage: python -m heimdall_pipeline.bench.rss_child KEY [KEY ...]
"""

from __future__ import annotations

import json
import os
import resource
import sys
import warnings


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def _maxrss_kb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # kB on Linux


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def main(keys: list[str]) -> int:
    warnings.filterwarnings("ignore")
    import logging

    from heimdall_pipeline import settings

    settings.load_embedded_env()
    from dagster import DagsterInstance

    from heimdall_pipeline.db.engine import make_engine
    from heimdall_pipeline.definitions import defs
    from heimdall_pipeline.runner import run_session

    logging.getLogger("dagster").setLevel(logging.WARNING)
    engine = make_engine(os.environ["HEIMDALL_DATABASE_URL"])
    out: dict = {"keys": keys, "runs": []}
    with DagsterInstance.ephemeral() as instance:
        out["rss_after_imports_kb"] = _status_kb("VmRSS")
        out["maxrss_after_imports_kb"] = _maxrss_kb()
        for i, key in enumerate(keys):
            reset = False
            if i > 0:
                reset = _reset_peak()
            before = _status_kb("VmRSS")
            result = run_session(defs, instance, engine, key)
            out["runs"].append({
                "key": key, "success": bool(result.success), "peak_reset": reset,
                "rss_before_kb": before, "ru_maxrss_kb": _maxrss_kb(), "vm_hwm_kb": _status_kb("VmHWM"),
                "rss_after_kb": _status_kb("VmRSS"),
            })
    print("RSS_JSON " + json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
