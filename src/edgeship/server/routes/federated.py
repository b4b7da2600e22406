"""Federated rounds: the operator's run API and the device's task and upload (docs/federated.md)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from edgeship.server import federated
from edgeship.server.auth import DeviceIdentity, require_device
from edgeship.server.context import ServerContext, context
from edgeship.server.credentials import Credential
from edgeship.server.problems import PayloadTooLarge
from edgeship.server.routes.body import JsonRoute
from edgeship.server.routes.deps import admin, credential

operator = APIRouter(prefix="/v1/admin/federated", tags=["federated"], dependencies=[Depends(admin)], route_class=JsonRoute)
devices = APIRouter(prefix="/v1/devices", tags=["federated"], route_class=JsonRoute)


class RunCreate(BaseModel):
    release: str = Field(description="NAME@VERSION: the signed base every device trains")
    target: str = Field("", description="key=value[,key=value…] selector of the cohort (empty: the fleet)")
    rounds: int = Field(1, ge=1, le=1000)
    min_participants: int = Field(2, ge=1)
    local_steps: int = Field(10, ge=1)
    clip_norm: float | None = Field(None, gt=0)
    noise_multiplier: float = Field(0.0, ge=0)
    max_norm: float = Field(100.0, gt=0, description="updates with a larger L2 norm are rejected")
    deadline_s: float = Field(600.0, gt=0)
    max_update_bytes: int = Field(64 << 20, ge=1024)
    cohort_size: int | None = Field(None, ge=1)


@operator.post("", status_code=201)
def start_run(body: RunCreate, ctx: ServerContext = Depends(context)) -> dict:
    opts = federated.RunOptions(**body.model_dump(exclude={"release", "target"}))
    with ctx.db.write() as session:
        return federated.start(session, ctx.repo, ctx.storage, ctx.settings.data_dir, body.release, body.target, opts)


@operator.get("")
def list_runs(ctx: ServerContext = Depends(context)) -> list[dict]:
    with ctx.db.write() as session:  # reading may close a round whose deadline passed
        return federated.list_runs(session, ctx.settings.data_dir)


@operator.get("/{run_id}")
def show_run(run_id: str, ctx: ServerContext = Depends(context)) -> dict:
    with ctx.db.write() as session:
        run = federated.get_run(session, run_id, lock=True)
        federated.advance(session, ctx.settings.data_dir, run)
        return federated.describe(run)


@operator.get("/{run_id}/candidate")
def pull_candidate(run_id: str, round: int | None = Query(None, ge=1), ctx: ServerContext = Depends(context)) -> FileResponse:
    with ctx.db.read() as session:
        path, entry = federated.candidate(session, ctx.settings.data_dir, run_id, round)
    return FileResponse(path, media_type="application/vnd.gguf", headers={"Edgeship-Round": str(entry["round"])})


@devices.get("/{device_id}/federated")
def device_task(device_id: str, cred: Credential = Depends(credential), ctx: ServerContext = Depends(context)) -> dict:
    with ctx.db.write() as session:
        return {"task": federated.task_for(session, ctx.settings.data_dir, require_device(session, cred, device_id))}


@devices.put("/{device_id}/federated/{run_id}/{round_no}")
async def upload_update(
    device_id: str,
    run_id: str,
    round_no: int,
    request: Request,
    samples: int = Header(..., alias="Edgeship-Samples"),
    metrics: str | None = Header(None, alias="Edgeship-Metrics", max_length=2000),
    cred: Credential = Depends(credential),
    ctx: ServerContext = Depends(context),
) -> dict:
    data_dir = ctx.settings.data_dir

    def admit() -> tuple[DeviceIdentity, int]:
        # Authenticated and checked against the round before a byte of the body is read.
        with ctx.db.read() as session:
            device = require_device(session, cred, device_id)
            run = federated.open_round(session, data_dir, device, run_id, round_no)
            return device, min(run.options["max_update_bytes"], ctx.settings.max_update_bytes)

    device, limit = await anyio.to_thread.run_sync(admit)
    values = federated.metrics_json(metrics)
    incoming = federated.run_dir(data_dir, run_id) / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=incoming, suffix=".patch", delete=False) as f:
        patch = Path(f.name)
    try:
        await _save_capped(request, patch, limit)

        def store() -> dict:
            with ctx.db.write() as session:
                run = federated.open_round(session, data_dir, device, run_id, round_no)
                return federated.receive(session, data_dir, device, run, patch, samples, values)

        return await anyio.to_thread.run_sync(store)
    finally:
        patch.unlink(missing_ok=True)


async def _save_capped(request: Request, dest: Path, limit: int) -> None:
    written = 0
    with open(dest, "wb") as out:
        async for chunk in request.stream():
            written += len(chunk)
            if written > limit:
                raise PayloadTooLarge(f"the update is over this round's limit of {limit} bytes", hint="send only the weight delta, not the model")
            out.write(chunk)
