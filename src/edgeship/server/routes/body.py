"""How a route that takes a JSON body reads it: strictly (strict_json.py), and judged only once the
caller is authenticated.

FastAPI parses a body before it runs the route's dependencies, so a malformed body would be
answered 422 before the credential dependency could answer 401. Here a body that cannot be
read reaches FastAPI as a value no model accepts: the dependencies (authentication) run first,
and the body's own problem is raised in place of the validation error that follows. The
credential dependency only reads the header, so a device route whose request is refused also
checks the credential in the database before saying why (a request that passes pays nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from edgeship.errors import UsageError
from edgeship.server import strict_json
from edgeship.server.routes.deps import credential, vouch_device

_UNREADABLE = object()  # what FastAPI validates in place of a body that cannot be read: no model accepts it


class JsonRequest(Request):
    problem: UsageError | None = None

    async def json(self) -> Any:
        try:
            return strict_json.loads(await self.body(), "the request body")
        except UsageError as exc:
            self.problem = exc
            return _UNREADABLE


class JsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        device_route = "device_id" in self.param_convertors and any(d.call is credential for d in self.dependant.dependencies)

        async def handler(request: Request) -> Response:
            strict = JsonRequest(request.scope, request.receive)
            try:
                return await handle(strict)
            except RequestValidationError:
                if device_route:
                    await vouch_device(strict, await credential(strict.headers.get("authorization")))
                if strict.problem is not None:
                    raise strict.problem from None
                raise

        return handler
