"""Services on this machine's loopback: a free port to bind, and whether an edgeship server is ready."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from edgeship.pinning import verify_for


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
