"""The FastAPI app: ``create_app(settings)`` builds one independent server.

Nothing that matters lives in process memory between requests: devices, tokens and events
are in the database, files in storage, so any number of instances can serve one fleet.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgeship import __version__
from edgeship.errors import EdgeshipError
from edgeship.server import logs, rollout_job
from edgeship.server.context import ServerContext
from edgeship.server.fast_checkin import FastCheckin, checkin_route
from edgeship.server.middleware import BodyLimitMiddleware, ObserveMiddleware
from edgeship.server.problems import HTTP_ERRORS, error_body, error_responses, status_of
from edgeship.server.routes import admin, devices, federated, ops, repo, rollouts
from edgeship.server.routes.deps import text_url
from edgeship.server.settings import ServerSettings
from edgeship.server.ui import mount as mount_dashboard

log = logging.getLogger("edgeship.server")


def create_app(settings: ServerSettings) -> FastAPI:
    ctx = ServerContext.build(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate:
            await anyio.to_thread.run_sync(ctx.db.migrate)
        # A data dir from before the database held the metadata seeds it (once, under the lock).
        await anyio.to_thread.run_sync(ctx.repo.adopt)
        jobs = [asyncio.create_task(_timestamp_job(ctx)), asyncio.create_task(rollout_job.run(ctx))]
        try:
            yield
        finally:
            for job in jobs:
                job.cancel()
            if ctx.push is not None:
                ctx.push.close()
            ctx.db.dispose()

    app = FastAPI(
        title="edgeship update server",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        responses=error_responses(),
        dependencies=[Depends(text_url)],
    )
    app.state.ctx = ctx
    for router in (devices.router, admin.router, rollouts.router, repo.router, ops.router, federated.operator, federated.devices):
        app.include_router(router)
    mount_dashboard(app)
    app.add_exception_handler(EdgeshipError, _edgeship_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # Innermost, so that request IDs, metrics and body limits apply to it as to every route.
    app.add_middleware(FastCheckin, ctx=ctx, route=checkin_route(devices.router.routes), error_response=_edgeship_response)
    app.add_middleware(BodyLimitMiddleware, limit_for=lambda path: _body_limit(settings, path))
    app.add_middleware(ObserveMiddleware, metrics=ctx.metrics, log_requests=settings.access_log)
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn worker processes: settings come from ``EDGESHIP_*`` variables."""
    settings = ServerSettings.load()
    logs.configure(settings.log_level)
    app = create_app(settings)
    freeze_heap()
    return app


def freeze_heap() -> None:
    """Leave the objects built so far out of the garbage collector's full passes (call once per
    server process, when its app is built). The app is ~170,000 long-lived objects; a full pass
    over them takes 100+ ms, and stalled every request in flight: the check-in p99 was these
    pauses."""
    gc.collect()
    gc.freeze()


def _body_limit(settings: ServerSettings, path: str) -> int | None:
    if path.startswith("/v1/admin/uploads/"):
        return None  # checked against Upload-Length and --max-blob-bytes while streaming
    if path.startswith("/v1/devices/") and "/federated/" in path:
        return settings.max_update_bytes  # weight deltas; each round's own cap is checked while streaming
    if path == "/v1/admin/metadata":
        return settings.max_metadata_bytes
    return settings.max_body_bytes


async def _timestamp_job(ctx: ServerContext) -> None:
    """Keep the timestamp fresh. Every instance runs this; under the repository lock the first
    one re-signs and the others, reading its timestamp from the database, find nothing due."""
    margin = timedelta(seconds=ctx.settings.timestamp_margin_s)

    def check() -> None:  # in a thread: `ready` reads the database and writes the cache
        if ctx.repo.ready:
            ctx.repo.refresh_timestamp_if_due(margin)

    while True:
        # Keep trying whatever fails: a job that ended would let devices' timestamps expire.
        try:
            await anyio.to_thread.run_sync(check)
        except (EdgeshipError, SQLAlchemyError, OSError) as exc:
            log.error("cannot refresh the timestamp: %s", exc)
        except Exception:
            log.exception("cannot refresh the timestamp")
        await asyncio.sleep(ctx.settings.timestamp_check_s)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status)


async def _edgeship_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EdgeshipError)
    return _edgeship_response(exc)


def _edgeship_response(exc: EdgeshipError) -> JSONResponse:
    status, code = status_of(exc)
    if status >= 500:
        log.error("request failed: %s", exc)
    headers = {"www-authenticate": "Bearer"} if status == 401 else None
    response = _error(status, code, str(exc))
    if headers:
        response.headers.update(headers)
    return response


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"] if p != "body") or "body"
        problems.append(f"{where}: {err['msg']}")
    return _error(422, "invalid", "; ".join(problems) + " (fix these fields and send again)")


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status, code, message = HTTP_ERRORS.get(exc.status_code, (exc.status_code, "http_error", str(exc.detail)))
    return _error(status, code, message)
