"""How this process's allocator treats large arrays: given back to the OS once freed.

A session's captures are large numpy arrays (~1 MB per receiver for 10 s at 12 kHz). glibc
serves blocks from 128 KiB up with their own mmap, returned to the OS on free, but its default
moves that threshold up to the size of the largest block freed so far: after the first capture is
freed, the next arrays come from the heap instead, and the fragmented heap they leave keeps its
pages. `heimdall session run` executes the capture run and then the analysis run in one process,
so the analysis run's peak landed on top of the ~8 MB the capture run had left (session_peak_rss
in docs/benchmark.md: 2.3-2.5x the IQ bytes, 1.6x with the threshold fixed). Fixing the threshold
(mallopt) keeps large arrays on mmap; small objects are unaffected.
"""

from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
LARGE_BLOCK_BYTES = 128 * 1024  # glibc's own initial threshold, kept instead of grown


def keep_large_arrays_out_of_the_heap() -> bool:
    """Fixes glibc's mmap threshold (a process-wide setting); False where there is no glibc."""
    process = ctypes.CDLL(None)  # the symbols already loaded (no library search, no ldconfig run)
    if not hasattr(process, "mallopt") or not hasattr(process, "gnu_get_libc_version"):
        return False
    return bool(process.mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK_BYTES))
