"""Device API: enroll, check in, post events (docs/protocol.md, "Device API")."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from edgeship.server import events, fleet, schemas
from edgeship.server.auth import require_device
from edgeship.server.context import ServerContext, context
from edgeship.server.credentials import Credential
from edgeship.server.routes.body import JsonRoute
from edgeship.server.routes.deps import credential
from edgeship.server.routes.lean import LeanRoute

router = APIRouter(prefix="/v1/devices", tags=["devices"], route_class=JsonRoute)


@router.post("/enroll", status_code=201)
def enroll(body: schemas.EnrollRequest, ctx: ServerContext = Depends(context)) -> schemas.EnrollResponse:
    with ctx.db.write() as session:
        return fleet.enroll(session, body, ctx.settings.poll_interval_s)


# Well-formed check-ins are answered before the router (fast_checkin.py); this route documents
# the endpoint and answers the others (refusals, odd bodies). Called lean (routes/lean.py): the
# credential comes from the route, not FastAPI. Answered once stored: concurrent check-ins are
# written in one transaction (group_commit.py).
async def checkin(device_id: str, body: schemas.CheckinRequest, request: Request, cred: Credential = Depends(credential)) -> Response:
    ctx: ServerContext = request.app.state.ctx
    answer = await ctx.checkins.submit(fleet.CheckinCall(cred, device_id, body))
    ctx.metrics.checkins.inc()
    # Serialized here, already validated by construction: FastAPI would validate it again.
    return Response(answer.model_dump_json(), media_type="application/json")


router.add_api_route("/{device_id}/checkin", checkin, methods=["POST"], response_model=schemas.CheckinResponse, route_class_override=LeanRoute)


@router.post("/{device_id}/events")
def post_events(
    device_id: str, body: schemas.EventsRequest, cred: Credential = Depends(credential), ctx: ServerContext = Depends(context)
) -> schemas.EventsResponse:
    with ctx.db.write() as session:
        result = events.ingest(session, require_device(session, cred, device_id), body.events, ctx.settings.max_events_per_batch)
    ctx.metrics.events.inc(result.accepted)
    return result
