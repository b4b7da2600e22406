"""ASGI middleware of the runtime: a cap on request bodies and per-request metrics."""

from __future__ import annotations

import json
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgeship.runtime.metrics import RuntimeMetrics

ENDPOINTS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/predict", "/props", "/healthz",
                       "/readyz", "/metrics", "/admin/swap", "/admin/health"})


class _TooLarge(Exception):
    pass


def error_body(message: str, kind: str, code: str | None = None) -> bytes:
    """OpenAI's error shape, which its client libraries turn into a typed exception."""
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()


class BodyLimit:
    """413 for a body over ``limit`` bytes, by its Content-Length or as soon as the stream passes it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if started:
                raise
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = error_body(f"request body larger than {self.limit} bytes", "invalid_request_error", "body_too_large")
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class RequestMetrics:
    """Count every request by endpoint and status and time it until its last byte (streams included)."""

    def __init__(self, app: ASGIApp, metrics: RuntimeMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Unknown paths share one label: a scanner must not grow the metric without bound.
        endpoint = scope["path"] if scope["path"] in ENDPOINTS else "other"
        started = time.perf_counter()
        status = 500

        async def timing_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timing_send)
        finally:
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
