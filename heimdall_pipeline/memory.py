"""How this process's C allocator treats large arrays. No Dagster.

glibc serves an allocation above its mmap threshold (128 KiB) with its own mapping, returned to
the OS when freed. But the first time such a block is freed, glibc raises the threshold to that
block's size (up to 32 MiB): every later capture-sized array (~1 MB per receiver-session) then
comes from the heap, where freed memory mostly stays resident and fragments across threads'
arenas. Measured on a 7-receiver, 10 s session: ~10 MB more peak RSS than the data needs, i.e.
3x the session's IQ instead of 1.6x (``heimdall bench``, figure session_peak_rss). Fixing the
threshold (which also turns glibc's adjustment off) keeps each large array in its own mapping.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt parameter number from glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
DEFAULT_MMAP_THRESHOLD_BYTES = 128 * 1024
THRESHOLD_ENV = "HEIMDALL_MALLOC_MMAP_THRESHOLD"

_applied: int | None = None


def mmap_threshold_setting() -> int:
    """HEIMDALL_MALLOC_MMAP_THRESHOLD in bytes (default 131072); 0 leaves glibc's own behaviour."""
    text = os.environ.get(THRESHOLD_ENV, "").strip()
    if not text:
        return DEFAULT_MMAP_THRESHOLD_BYTES
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{THRESHOLD_ENV}={text!r} is not a whole number of bytes") from None
    if value < 0 or value > 32 * 1024 * 1024:
        raise ValueError(f"{THRESHOLD_ENV}={value} must be 0 (leave glibc's default) or 1..33554432 bytes")
    return value


def configure_allocator() -> int | None:
    """Fixes glibc's mmap threshold once per process; returns the threshold set, or None where it
    does not apply (setting 0, or a C library without mallopt, e.g. musl or macOS)."""
    global _applied
    threshold = mmap_threshold_setting()
    if threshold == 0:
        return None
    if _applied == threshold:
        return threshold
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # glibc only: other C libraries' mallopt means other things
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    if mallopt(M_MMAP_THRESHOLD, threshold) != 1:
        return None
    _applied = threshold
    return threshold
