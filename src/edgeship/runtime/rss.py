"""Resident memory of this process: what the health suite caps and /metrics reports, and giving it back."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import resource
import sys


def rss_bytes() -> int:
    """Resident memory of this process now (Linux), or its peak where /proc is missing."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, others KiB


@functools.cache
def libc() -> ctypes.CDLL | None:
    """The C library on Linux (looked up once: find_library runs ldconfig), else None."""
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name and sys.platform.startswith("linux") else None


def return_free_memory() -> None:
    """Hand freed heap memory back to the OS (glibc; elsewhere a no-op).

    A freed model's buffers go back to malloc, which keeps them: glibc raises its mmap threshold
    after the first big free, so later big buffers come from the heap, and free() there does
    not shrink the process. Without this each swap left tens of MiB resident.
    """
    c = libc()
    trim = getattr(c, "malloc_trim", None) if c is not None else None
    if trim is not None:
        trim(0)
