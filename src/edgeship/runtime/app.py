"""The runtime's HTTP API: OpenAI-compatible text generation, /v1/predict, probes, metrics, admin.

Handlers parse the request, call :class:`~edgeship.runtime.service.Runtime`, and format
its answer; errors from :mod:`edgeship.errors` become OpenAI-shaped error bodies.
"""

from __future__ import annotations

import asyncio
import hmac
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.types import Receive, Scope, Send

from edgeship.errors import EdgeshipError, NotFoundError, UsageError
from edgeship.runtime.health import HealthReport
from edgeship.runtime.imaging import is_image
from edgeship.runtime.middleware import BodyLimit, RequestMetrics, error_body
from edgeship.runtime.schemas import AdaptersRequest, ChatRequest, CompletionRequest, PredictRequest, SwapRequest
from edgeship.runtime.service import Runtime, TokenStream, sse
from edgeship.runtime.swap import NotReadyError, SwapOutcome
from edgeship.runtime.tensors import NPY_MAGIC, from_npy

_LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


class _Forbidden(EdgeshipError):
    pass


def _status(exc: EdgeshipError) -> tuple[int, str]:
    if isinstance(exc, NotReadyError):
        return 503, "service_unavailable"
    if isinstance(exc, _Forbidden):
        return 403, "permission_error"
    if isinstance(exc, NotFoundError):
        return 404, "not_found_error"
    if isinstance(exc, UsageError):
        return 400, "invalid_request_error"
    return 500, "runtime_error"


class LeasedStreamingResponse(StreamingResponse):
    """Server-sent events from one worker thread, freeing the model lease however the stream ends.

    The whole generation runs in one thread that hands each event to the event loop. The
    usual way (one thread hop per chunk) costs more per token than a small model's token.
    """

    def __init__(self, stream: TokenStream) -> None:
        self._stream = stream
        self._stop = threading.Event()  # client gone: stop generating at the next token
        self._producer: asyncio.Future[None] | None = None
        super().__init__(self._events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    def _produce(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | BaseException | None]) -> None:
        events = sse(self._stream)
        try:
            for event in events:
                if self._stop.is_set():
                    break
                loop.call_soon_threadsafe(queue.put_nowait, event)
        except BaseException as exc:  # noqa: BLE001 -- handed to the loop, which raises it in the response
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            events.close()
            self._stream.close()  # in this thread: the generator must not be closed while it runs
            loop.call_soon_threadsafe(queue.put_nowait, None)

    async def _events(self) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
        self._producer = asyncio.ensure_future(anyio.to_thread.run_sync(self._produce, loop, queue))
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._stop.set()
            if self._producer is not None:
                await self._producer
            else:  # the body never started: nobody else will release the lease
                await run_in_threadpool(self._stream.close)


def _answer(result: dict[str, Any] | TokenStream) -> Response:
    return LeasedStreamingResponse(result) if isinstance(result, TokenStream) else JSONResponse(result)


def create_app(runtime: Runtime) -> FastAPI:
    """The app for ``runtime``; its lifespan loads the current release and frees everything at exit."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(runtime.start)
        try:
            yield
        finally:
            await run_in_threadpool(runtime.close)

    app = FastAPI(title="edgeship runtime", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit, limit=runtime.config.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=runtime.metrics)

    @app.exception_handler(EdgeshipError)
    async def _edgeship_error(_: Request, exc: EdgeshipError) -> Response:
        status, kind = _status(exc)
        headers = {"Retry-After": "1"} if status == 503 else None
        return Response(error_body(str(exc), kind), status, headers=headers, media_type="application/json")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors())
        return Response(error_body(f"invalid request: {problems}", "invalid_request_error"), 400,
                        media_type="application/json")

    def admin(request: Request) -> None:
        # Loopback and the token: a process on the device's network cannot swap models,
        # and a local process needs read access to the agent's data dir.
        if request.client is None or request.client.host not in _LOOPBACK:
            raise _Forbidden("the admin API answers on loopback only")
        given = request.headers.get("authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), runtime.token.encode()):
            raise _Forbidden("missing or wrong admin token", hint=f"send 'Authorization: Bearer' + the token in "
                             f"{runtime.config.token_path.name} of the data dir")

    # Probes and listings are async: they must answer even when every worker thread is busy generating.
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        state = runtime.readiness()
        return JSONResponse(state, 200 if state["ready"] else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(runtime.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": runtime.models()}

    @app.get("/props")
    async def props(model: str | None = None) -> dict[str, Any]:
        return runtime.props(model)

    @app.post("/v1/completions")
    def completions(body: CompletionRequest) -> Response:
        return _answer(runtime.completion(body))

    @app.post("/v1/chat/completions")
    def chat_completions(body: ChatRequest) -> Response:
        return _answer(runtime.chat(body))

    @app.post("/v1/predict")
    async def predict(request: Request) -> Response:
        kind = request.headers.get("content-type", "")
        if kind.startswith("application/json"):
            try:
                body = PredictRequest.model_validate_json(await request.body())
            except ValueError as exc:
                raise UsageError(f"invalid predict request: {exc}",
                                 hint='send {"model": NAME, "inputs": {INPUT: nested lists}}') from exc
            return JSONResponse(await run_in_threadpool(runtime.predict, body.model, body.inputs))
        if not kind.startswith("multipart/form-data"):
            raise UsageError(f"content type {kind or 'none'} is not accepted",
                             hint="send JSON tensors, or a multipart upload of .npy files or one PNG/JPEG image")
        return await _predict_upload(runtime, request)

    @app.post("/admin/swap", dependencies=[Depends(admin)])
    def swap(body: SwapRequest) -> SwapOutcome:
        return runtime.swap(body.release_id, body.cpu)

    @app.post("/admin/adapters", dependencies=[Depends(admin)])
    def adapters(body: AdaptersRequest) -> dict[str, Any]:
        return runtime.set_adapters(body.default)

    @app.post("/admin/health", dependencies=[Depends(admin)])
    def health() -> HealthReport:
        return runtime.health()

    return app


async def _predict_upload(runtime: Runtime, request: Request) -> Response:
    form = await request.form()
    model = form.get("model")
    fmt = form.get("format", "png")
    files = {name: value for name, value in form.multi_items() if isinstance(value, UploadFile)}
    if not files or not isinstance(model, str | None) or not isinstance(fmt, str):
        raise UsageError("the upload has no files", hint="send one PNG/JPEG as 'image', or one .npy per model input")
    data = {name: await f.read() for name, f in files.items()}
    if len(data) == 1 and is_image(next(iter(data.values()))):
        body, media_type, release_id = await run_in_threadpool(runtime.predict_image, model, next(iter(data.values())), fmt)
        return Response(body, media_type=media_type, headers={"X-Edgeship-Release": release_id})
    for name, blob in data.items():
        if not blob.startswith(NPY_MAGIC):
            raise UsageError(f"upload {name!r} is neither a PNG/JPEG image nor an .npy tensor",
                             hint="send one image, or one .npy file per model input named after the input")
    arrays = {name: from_npy(name, blob) for name, blob in data.items()}
    return JSONResponse(await run_in_threadpool(runtime.predict, model, arrays))
