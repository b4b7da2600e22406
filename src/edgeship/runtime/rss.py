"""Resident memory of this process: what the health suite caps and /metrics reports."""

from __future__ import annotations

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
