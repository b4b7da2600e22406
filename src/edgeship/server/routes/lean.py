"""A FastAPI route class for the hottest device routes (check-in): documented as usual, called lean.

FastAPI documents the endpoint from its signature as for any route, but calls it without its
dependency machinery, which on a check-in cost more CPU than the check-in itself: the endpoint
gets its path parameters (as strings), ``cred`` (the bearer credential, read before the body
is judged: a caller who is not authenticated hears nothing about its body), ``body`` validated
from the JSON request body against its annotated model, and ``request``. Such an endpoint
declares ``cred`` with ``Depends(credential)`` (for the documentation) and no other dependency
(it reads the context from the request), and returns a ``Response``. Errors are the ones a
route of routes/body.py raises, so the app's handlers answer them the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, get_type_hints

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from edgeship.errors import UsageError
from edgeship.server import strict_json
from edgeship.server.routes.deps import credential, text_url, vouch_device

M = TypeVar("M", bound=BaseModel)


class LeanRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint
        model: type[BaseModel] = get_type_hints(endpoint)["body"]

        async def handler(request: Request) -> Response:
            await text_url(request)  # the app-wide dependency, which this route does not go through
            cred = await credential(request.headers.get("authorization"))
            try:
                body = model_from_json(model, await request.body(), request.headers.get("content-type"))
            except (UsageError, RequestValidationError):
                await vouch_device(request, cred)  # only on this path: a good check-in is checked once, when stored
                raise
            return await endpoint(**request.path_params, cred=cred, body=body, request=request)

        return handler


def model_from_json(model: type[M], raw: bytes, content_type: str | None) -> M:
    """``raw`` validated as ``model``: a ``UsageError`` if it cannot be read as JSON, the
    ``RequestValidationError`` FastAPI would raise if it is not a ``model``."""
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    value: Any = strict_json.loads(raw, "the request body") if _is_json(content_type) else raw
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from exc


def _is_json(content_type: str | None) -> bool:
    """FastAPI's rule: no content type, or application/json or application/*+json."""
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith("application/") and (media == "application/json" or media.endswith("+json"))
