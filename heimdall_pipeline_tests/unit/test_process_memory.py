"""Large arrays freed by a run go back to the OS in every process that loads the code location
(process_memory.py): glibc's growing mmap threshold would otherwise keep them in a fragmented heap
(session_peak_rss in docs/benchmark.md)."""

from __future__ import annotations

import subprocess
import sys

# A capture freed, then 20 arrays of 880 KB freed while 200 KB arrays allocated between them stay
# in use: what the capture run's arrays and the objects that outlive it look like to the allocator.
PATTERN = """
import numpy as np

def rss_kb():
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmRSS")).split()[1])

first = np.ones(1 << 17, np.complex64)
del first
before = rss_kb()
big, kept = [], []
for _ in range(20):
    big.append(np.ones(110_000, np.complex64))
    kept.append(np.ones(25_000, np.complex64))
del big
print((rss_kb() - before) / 1024)
"""
KEPT_MB = 20 * 25_000 * 8 / 2**20


def retained_mb(setup: str) -> float:
    done = subprocess.run([sys.executable, "-c", setup + PATTERN], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return float(done.stdout.strip())


def test_the_code_location_gives_freed_arrays_back():
    with_location = retained_mb("import heimdall_pipeline.definitions\n")
    assert with_location < KEPT_MB + 1.5, with_location


def test_without_it_the_same_pattern_keeps_the_freed_arrays():
    """The control: the pattern does show the effect the setting removes."""
    assert retained_mb("") > KEPT_MB + 10
