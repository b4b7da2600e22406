"""The check-in fast path: a well-formed check-in answered without FastAPI's router.

Check-in is the server's hottest request, and routing it through FastAPI (route matching over
every route, dependency solving, request objects, the exception middleware) cost more CPU than
recording it. This ASGI middleware sits inside the app's own middleware (request IDs, metrics,
body limits, which still apply) and answers ``POST /v1/devices/{id}/checkin`` itself when the
request is plainly well formed: a JSON body that validates and a bearer credential. Anything
else (a body FastAPI would refuse, no credential, an odd URL) goes on, body and all, to the
documented route in ``routes/devices.py``, which answers it as every other route would; so
the fast path changes the cost of a check-in, never its answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgeship.errors import EdgeshipError
from edgeship.server import fleet, schemas
from edgeship.server.context import ServerContext
from edgeship.server.credentials import bearer
from edgeship.server.routes.lean import model_from_json

PATH = "/v1/devices/{device_id}/checkin"
# Device IDs are `dev_` and hex; anything else (NUL, percent signs, slashes) takes the full route.
_PATH_RE = re.compile(r"/v1/devices/([A-Za-z0-9_-]{1,64})/checkin")
_JSON_HEADERS = [(b"content-type", b"application/json")]


class FastCheckin:
    """ASGI middleware: well-formed check-ins answered here, everything else passed to ``app``.

    ``route`` is the app's documented check-in route (set in the scope, so metrics and logs
    name it as before); ``error_response`` turns a refusal into the app's error answer."""

    def __init__(self, app: ASGIApp, ctx: ServerContext, route: object,
                 error_response: Callable[[EdgeshipError], ASGIApp]) -> None:
        self.app = app
        self.ctx = ctx
        self.route = route
        self.error_response = error_response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _PATH_RE.fullmatch(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:  # the client left, or the body limit cut it off (and answers 413)
            return
        call = _parse(scope, match[1], body)
        if call is None:
            await self.app(scope, _replay(body, receive), send)
            return
        scope["route"] = self.route
        try:
            answer = await self.ctx.checkins.submit(call)
        except EdgeshipError as exc:
            await self.error_response(exc)(scope, receive, send)
            return
        self.ctx.metrics.checkins.inc()
        payload = answer.model_dump_json().encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


def _parse(scope: Scope, device_id: str, body: bytes) -> fleet.CheckinCall | None:
    """The check-in a request asks for, or None when the full route must answer it."""
    headers = dict(scope["headers"])
    authorization = headers.get(b"authorization")
    if authorization is None or headers.get(b"content-type") != b"application/json" or b"%00" in scope["query_string"]:
        return None
    try:
        # The route's own reader, so that both accept the same bodies.
        req = model_from_json(schemas.CheckinRequest, body, "application/json")
        cred = bearer(authorization.decode("latin-1"), "credential")
    except (RequestValidationError, EdgeshipError):
        return None
    return fleet.CheckinCall(cred, device_id, req)


async def _read_body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body read already, then whatever the client sends next."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def checkin_route(routes: list[Any]) -> object:
    """The app's documented check-in route."""
    return next(r for r in routes if getattr(r, "path", None) == PATH)
