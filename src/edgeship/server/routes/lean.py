"""A FastAPI route class for the hottest routes (check-in): documented as usual, called lean.

FastAPI documents the endpoint from its signature as for any route, but calls it without its
dependency machinery, which on a check-in cost more CPU than the check-in itself: the endpoint
gets its path parameters (as strings), ``body`` validated from the JSON request body against
its annotated model, and ``request``. Such an endpoint declares no dependencies (it reads the
credential and the context from the request) and returns a ``Response``. Errors are the ones
FastAPI would raise, so the app's handlers answer them the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any, get_type_hints

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from edgeship.server.routes.deps import text_url


class LeanRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint
        model: type[BaseModel] = get_type_hints(endpoint)["body"]

        async def handler(request: Request) -> Response:
            await text_url(request)  # the app-wide dependency, which this route does not go through
            body = model_from_json(model, await request.body(), request.headers.get("content-type"))
            return await endpoint(**request.path_params, body=body, request=request)

        return handler


def model_from_json(model: type[BaseModel], raw: bytes, content_type: str | None) -> BaseModel:
    """``raw`` validated as ``model``, or the ``RequestValidationError`` FastAPI would raise."""
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    value: Any = raw
    if _is_json(content_type):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise RequestValidationError([{"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error", "input": {}}]) from exc
        except UnicodeDecodeError as exc:
            raise HTTPException(400, "There was an error parsing the body") from exc
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
