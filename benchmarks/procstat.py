"""CPU and memory of processes (read from /proc, Linux), and what one command costs from start to exit."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Finished:
    """What a command cost, start to exit."""

    wall_s: float
    cpu_s: float  # user + system
    max_rss: int  # peak resident memory, bytes


# wait4's ru_maxrss of a direct child also counts the parent's pages it was forked from, so a
# small launcher (python -S) forks the command and reports the command's own figures.
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{usage.ru_maxrss} {usage.ru_utime + usage.ru_stime}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def finished(argv: list[str], *, env: dict[str, str] | None = None) -> Finished:
    """Run a command to completion (output discarded); raise with its stderr when it fails."""
    with tempfile.TemporaryDirectory(prefix="procstat-") as tmp:
        figures, log = Path(tmp) / "figures", Path(tmp) / "stderr"
        start = time.perf_counter()
        with log.open("wb") as err:
            code = subprocess.call([sys.executable, "-S", "-c", _LAUNCHER, str(figures), *argv],
                                   stdout=subprocess.DEVNULL, stderr=err, env=env)
        wall = time.perf_counter() - start
        if code:
            raise RuntimeError(f"{' '.join(argv)} failed ({code}): {log.read_text()[-500:]}")
        max_rss_kib, cpu = figures.read_text().split()
    return Finished(wall, float(cpu), int(max_rss_kib) * 1024)
