"""ASGI middleware: request IDs, JSON access log, request metrics and body size limits.

Written as plain ASGI (not BaseHTTPMiddleware) so that streamed downloads and uploads pass
through without being buffered.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import secrets
import time
from collections.abc import Callable

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgeship.server.logs import request_id
from edgeship.server.metrics import ServerMetrics
from edgeship.server.problems import error_body

access_log = logging.getLogger("edgeship.server.access")
_REPO_KINDS = {"metadata", "releases", "blobs", "deltas"}


class _RequestIds:
    """Request IDs of 32 hex digits: a random prefix per process and a counter. Unique like
    uuid4's (the prefix is drawn again in a forked child), at a quarter of the cost."""

    def __init__(self) -> None:
        self._reseed()
        os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._count = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._count):016x}"


_request_ids = _RequestIds()


class ObserveMiddleware:
    """Gives each request an ID (``X-Request-ID``, kept if the client sent a sane one), times it and logs it."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, log_requests: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.log_requests = log_requests
        # Label children by (method, route, status): ``labels()`` validates and locks on every call.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else _request_ids.next()
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500
        sent = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            key = (scope["method"], route, status)
            if (children := self._children.get(key)) is None:
                children = self._children[key] = (self.metrics.requests.labels(key[0], route, str(status)), self.metrics.latency.labels(route))
            children[0].inc()
            children[1].observe(elapsed)
            if route.startswith("/repo/"):
                kind = scope["path"].split("/")[2]
                self.metrics.bytes_served.labels(kind if kind in _REPO_KINDS else "other").inc(sent)
            if self.log_requests:
                access_log.info(
                    "request",
                    extra={"method": scope["method"], "path": scope["path"], "status": status, "ms": round(elapsed * 1000, 2), "bytes": sent},
                )
            request_id.reset(token)


class BodyLimitMiddleware:
    """Answers 413 before reading a body over the limit for its path (``limit_for``)."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int | None]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limit_for(scope["path"]) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(send, limit)
            return
        received = 0
        too_large = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # A chunked body that grows past the limit: stop reading, answer 413.
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_large:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            # The app fails reading the body we cut off; that failure is the 413 below.
            if not too_large:
                raise
        if too_large and not started:
            await _too_large(send, limit)


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps(error_body("too_large", f"request body is over this server's limit of {limit} bytes; send less per request")).encode()
    await send(
        {"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]}
    )
    await send({"type": "http.response.body", "body": body})
