"""The local status API: ``GET /status`` on a loopback port, for the device's own software.

It serves what the agent last wrote to ``status.json`` (state, releases, the notice of a
coming switch, last error), so it never blocks or races the agent's loop. Standard library
only: it costs the agent a thread, not a web framework.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class StatusServer:
    def __init__(self, status_file: Path, port: int, host: str = "127.0.0.1") -> None:
        status = status_file

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                if self.path.rstrip("/") not in ("/status", ""):
                    self.send_error(404, "only /status is served here")
                    return
                try:
                    body = status.read_bytes()
                except FileNotFoundError:
                    body = b'{"state": "starting"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's signature
                return  # polled often by local software: not worth a log line each

        self._server = ThreadingHTTPServer((host, port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="status-api", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
