"""edgeship services run as local processes on loopback: ports, readiness, and stopping them all.

The demo and the real-agent rehearsal (`edgeship simulate --real-agents`) both start a
server and agent processes this way; tests and benchmarks use the same pieces.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from edgeship.errors import ServerError
from edgeship.pinning import verify_for

# The edgeship CLI as a child process (the package has no __main__ of its own).
CLI = [sys.executable, "-c", "from edgeship.cli.main import main; main()"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_ready(url: str, ca: Path | None = None) -> bool:
    """True once the server at ``url`` answers /readyz with 200 (HTTPS pinned to ``ca`` when given)."""
    try:
        return httpx.get(f"{url}/readyz", verify=verify_for(str(ca) if ca else None), timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def wait_for(what: str, check: Callable[[], bool], timeout: float, logs: Path | None = None) -> None:
    """Poll ``check`` until it holds; past ``timeout`` seconds, a ServerError naming ``what`` (and ``logs``)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise ServerError(f"gave up waiting for {what} after {timeout:g}s",
                              hint=f"the process logs are in {logs}" if logs else "see the output above")
        time.sleep(0.3)


@dataclass
class Processes:
    """Child processes, each in its own process group; ``close`` stops every group."""

    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:  # the child keeps its own descriptor
            proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        self.procs.clear()


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:  # already gone, with its group
        pass
