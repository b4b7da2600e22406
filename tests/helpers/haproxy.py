"""A real load balancer for tests and benchmarks: Debian's haproxy, round-robin over server instances.

haproxy polls each instance's /readyz and retries a refused connection on another, so a
killed instance drops out without failing the requests that reach it meanwhile.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from edgeship.errors import ServerError
from edgeship.loopback import Processes, free_port, server_ready, wait_for

HAPROXY = Path(shutil.which("haproxy") or "/usr/sbin/haproxy")


def haproxy_config(port: int, backends: list[str], check_interval_ms: int = 200) -> str:
    """Config for haproxy on 127.0.0.1:``port`` in front of ``backends`` (``host:port`` each)."""
    servers = "\n".join(
        f"    server s{i} {b} check inter {check_interval_ms}ms fall 1 rise 2" for i, b in enumerate(backends)
    )
    return f"""global
    maxconn 4096
    nbthread 1
defaults
    mode http
    option http-keep-alive
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response
frontend fleet
    bind 127.0.0.1:{port}
    default_backend instances
backend instances
    balance roundrobin
    http-reuse always
    option httpchk GET /readyz
{servers}
"""


def start_haproxy(procs: Processes, work: Path, backends: list[str], name: str = "haproxy",
                  check_interval_ms: int = 200) -> tuple[subprocess.Popen[bytes], str]:
    """Start haproxy (stopped with ``procs``) once it answers /readyz; returns it and its URL."""
    port = free_port()
    cfg, log = work / f"{name}.cfg", work / f"{name}.log"
    cfg.write_text(haproxy_config(port, [b.removeprefix("http://") for b in backends], check_interval_ms))
    proc = procs.spawn([str(HAPROXY), "-db", "-f", str(cfg)], log)
    url = f"http://127.0.0.1:{port}"
    wait_for("haproxy", lambda: proc.poll() is not None or server_ready(url), 20, log)
    if proc.poll() is not None:
        raise ServerError(f"haproxy exited with {proc.returncode}", hint=f"see {log}")
    return proc, url
