"""CPU and memory of processes, read from /proc (Linux), for the benchmarks' per-request costs."""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """A process and all its descendants."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return found


def status_kib(pid: int, field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak since exec) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def usage(pids: list[int]) -> tuple[int, float]:
    """Resident memory (bytes) and CPU used so far (seconds) by these processes; gone ones count 0."""
    rss, cpu = 0, 0.0
    for p in pids:
        try:
            rss += status_kib(p, "VmRSS") * 1024
            cpu += cpu_s(p)
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited meanwhile
    return rss, cpu


def tree_usage(pid: int) -> tuple[int, float]:
    """Resident memory (bytes) and CPU used so far (seconds) by a process tree."""
    return usage(tree(pid))
