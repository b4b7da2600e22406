"""A real loopback TCP proxy that lets response bodies trickle, in front of the real server.

    proxy = DripProxy(server_port, prefix="/repo/metadata/", step=1, every_s=0.5, times=1)

Requests are passed through untouched. A 200 or 206 response to a request whose path starts
with ``prefix`` gets its status line and headers at once, then its body at ``step`` bytes
every ``every_s`` seconds — a mirror that answers and then hardly sends anything. ``times``
bounds how many responses are slowed (None: all of them); later ones pass at full speed.
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field

_REQUEST = re.compile(rb"^[A-Z]+ (\S+) HTTP/1\.[01]\r\n", re.M)


@dataclass
class _Link:
    """One client connection: what its latest request asked for decides how its response flows."""

    wanted: bool = False  # the latest request's path starts with the prefix
    slow: bool = False  # its response trickles (decided by its status line)
    head_done: bool = False  # the response's headers went out
    lock: threading.Lock = field(default_factory=threading.Lock)


class DripProxy:
    def __init__(self, upstream_port: int, *, prefix: str, step: int = 1, every_s: float = 0.5, times: int | None = None) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.prefix = prefix.encode()
        self.step = step
        self.every_s = every_s
        self.left = times
        self.slowed = 0  # responses slowed so far
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._closed = threading.Event()
        self._conns: list[socket.socket] = []
        self._guard = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._closed.set()
        self._sock.close()
        with self._guard:
            for c in self._conns:
                c.close()

    def __enter__(self) -> DripProxy:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._guard:
                self._conns += [client, upstream]
            link = _Link()
            threading.Thread(target=self._requests, args=(client, upstream, link), daemon=True).start()
            threading.Thread(target=self._responses, args=(upstream, client, link), daemon=True).start()

    def _requests(self, src: socket.socket, dst: socket.socket, link: _Link) -> None:
        try:
            while data := src.recv(65536):
                m = _REQUEST.search(data)
                if m:  # HTTP/1.1 without pipelining: a new request means the last response is done
                    with link.lock:
                        link.wanted, link.slow, link.head_done = m.group(1).startswith(self.prefix), False, False
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _shut(dst)

    def _take(self) -> bool:
        with self._guard:
            if self.left is not None:
                if self.left <= 0:
                    return False
                self.left -= 1
            self.slowed += 1
            return True

    def _responses(self, src: socket.socket, dst: socket.socket, link: _Link) -> None:
        try:
            while data := src.recv(65536):
                with link.lock:
                    wanted, slow, head_done = link.wanted, link.slow, link.head_done
                if wanted and not head_done:
                    # Responses on one connection come one after another, and the proxy
                    # reads its first bytes first: the status line is at the start.
                    end = data.find(b"\r\n\r\n")
                    if end >= 0:
                        slow = data.split(b" ", 2)[1] in (b"200", b"206") and self._take()
                        with link.lock:
                            link.slow, link.head_done = slow, True
                        dst.sendall(data[: end + 4])
                        data = data[end + 4 :]
                if not slow:
                    dst.sendall(data)
                    continue
                for i in range(0, len(data), self.step):
                    if self._closed.wait(self.every_s):
                        return
                    dst.sendall(data[i : i + self.step])
        except OSError:
            pass
        finally:
            _shut(dst)


def _shut(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


__all__ = ["DripProxy"]
