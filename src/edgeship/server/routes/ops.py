"""Operations: liveness, readiness and Prometheus metrics (no credentials; keep them off the internet)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from edgeship.errors import ServerError
from edgeship.server.context import ServerContext, context
from edgeship.server.problems import NotReady

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(ctx: ServerContext = Depends(context)) -> dict[str, str]:
    try:
        ctx.db.ping()
    except ServerError as exc:
        raise NotReady(exc.message, hint=exc.hint) from exc
    if not ctx.repo.ready:
        raise NotReady("the repository has no signed metadata", hint="run `edgeship server init --data-dir DIR --workspace WS`")
    return {"status": "ready"}


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(ctx: ServerContext = Depends(context)) -> Response:
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)
