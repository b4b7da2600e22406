"""Operator API behind an admin token (docs/protocol.md, "Operator API")."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from edgeship.server import assignments, events, fleet, push, schemas, uploads
from edgeship.server.auth import create_admin_token
from edgeship.server.context import ServerContext, context
from edgeship.server.routes.body import JsonRoute
from edgeship.server.routes.deps import admin
from edgeship.store.digest import Digest

router = APIRouter(prefix="/v1/admin", tags=["operators"], dependencies=[Depends(admin)], route_class=JsonRoute)


def _digest(hexdigest: str) -> Digest:
    return Digest.parse(f"sha256:{hexdigest}")


@router.post("/tokens", status_code=201)
def new_admin_token(body: schemas.AdminTokenCreate, ctx: ServerContext = Depends(context)) -> schemas.AdminTokenOut:
    with ctx.db.write() as session:
        cred = create_admin_token(session, body.name)
    return schemas.AdminTokenOut(id=cred.id, token=cred.token, name=body.name)


@router.post("/enroll-tokens", status_code=201)
def new_enroll_token(body: schemas.EnrollTokenCreate, ctx: ServerContext = Depends(context)) -> schemas.EnrollTokenOut:
    with ctx.db.write() as session:
        return fleet.create_enroll_token(session, body)


@router.delete("/enroll-tokens/{token_id}")
def revoke_enroll_token(token_id: str, ctx: ServerContext = Depends(context)) -> schemas.EnrollTokenOut:
    with ctx.db.write() as session:
        return fleet.revoke_enroll_token(session, token_id)


@router.get("/devices")
def list_devices(
    tag: str | None = Query(None, description="k=v"),
    after: str = Query("", max_length=32, description="list devices with IDs after this one (paging)"),
    limit: int = Query(500, ge=1, le=5000),
    include_decommissioned: bool = Query(False, alias="all", description="include decommissioned devices"),
    ctx: ServerContext = Depends(context),
) -> list[schemas.DeviceOut]:
    selector = schemas.parse_tag(tag) if tag else None
    with ctx.db.read() as session:
        return [fleet.device_out(session, d) for d in fleet.list_devices(session, selector, after, limit, include_decommissioned)]


@router.get("/devices/{device_id}")
def show_device(device_id: str, ctx: ServerContext = Depends(context)) -> schemas.DeviceOut:
    with ctx.db.read() as session:
        return fleet.device_out(session, fleet.get_device(session, device_id), with_assignment=True)


@router.delete("/devices/{device_id}")
def decommission_device(device_id: str, ctx: ServerContext = Depends(context)) -> schemas.DeviceOut:
    with ctx.db.write() as session:
        return fleet.device_out(session, fleet.decommission(session, device_id))


@router.post("/assignments", status_code=201)
def assign(body: schemas.AssignmentCreate, ctx: ServerContext = Depends(context)) -> schemas.AssignmentRecord:
    with ctx.db.write() as session:
        return assignments.assign(session, ctx.repo, ctx.storage, body)


@router.get("/assignments")
def list_assignments(ctx: ServerContext = Depends(context)) -> list[schemas.AssignmentRecord]:
    with ctx.db.read() as session:
        return assignments.list_assignments(session)


@router.get("/mqtt/accounts")
def mqtt_accounts(
    after: str = Query("", max_length=32, description="accounts of devices with IDs after this one (paging)"),
    limit: int = Query(5000, ge=1, le=20000),
    ctx: ServerContext = Depends(context),
) -> list[schemas.MqttAccount]:
    """Broker users for `edgeship mqtt config`: each device's MQTT password hash and tags."""
    with ctx.db.read() as session:
        accounts = push.broker_accounts(session, after, limit)
    return [schemas.MqttAccount(device_id=a.device_id, password_hash=a.password_hash, tags=dict(a.tags)) for a in accounts]


@router.get("/events")
def list_events(
    device_id: str | None = Query(None, max_length=32),
    after: int = Query(0, ge=0, le=2**63 - 1, description="only events with a sequence number above this"),
    limit: int = Query(100, ge=1, le=1000),
    ctx: ServerContext = Depends(context),
) -> schemas.EventPage:
    with ctx.db.read() as session:
        return events.list_events(session, device_id, after, limit)


@router.head("/uploads/sha256/{hexdigest}")
def upload_status(hexdigest: str, ctx: ServerContext = Depends(context)) -> Response:
    state = uploads.status(ctx.storage, _digest(hexdigest))
    return Response(headers={"upload-offset": str(state.offset), "upload-complete": "1" if state.complete else "0"})


@router.patch("/uploads/sha256/{hexdigest}")
async def upload_append(
    hexdigest: str,
    request: Request,
    upload_offset: str | None = Header(None),
    upload_length: str | None = Header(None),
    ctx: ServerContext = Depends(context),
) -> schemas.UploadStatus:
    return await uploads.receive(
        ctx.storage, _digest(hexdigest), upload_offset, upload_length, request.stream(), ctx.settings.max_blob_bytes
    )


@router.put("/uploads/sha256/{hexdigest}")
async def upload_whole(hexdigest: str, request: Request, ctx: ServerContext = Depends(context)) -> schemas.UploadStatus:
    # Content-Length is read, not declared: it frames the request, it is no parameter of it.
    length = request.headers.get("content-length")
    return await uploads.receive(ctx.storage, _digest(hexdigest), "0", length, request.stream(), ctx.settings.max_blob_bytes)


@router.post("/metadata")
def publish(body: schemas.MetadataUpload, ctx: ServerContext = Depends(context)) -> schemas.PublishResult:
    result = ctx.repo.publish(ctx.storage, body.targets_bytes(), body.roots_bytes(), body.bins_bytes())
    return schemas.PublishResult(**result)


@router.get("/repository")
def repository(ctx: ServerContext = Depends(context)) -> schemas.PublishResult:
    return schemas.PublishResult(**ctx.repo.versions(), releases=sorted(f"{e['name']}@{e['version']}" for e in ctx.repo.releases()))
