"""Operator API for rollouts, A/B experiments and webhooks (docs/rollouts.md)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Query

from edgeship.server import experiments, rollouts, webhooks
from edgeship.server import rollout_schemas as schemas
from edgeship.server.context import ServerContext, context
from edgeship.server.routes.body import JsonRoute
from edgeship.server.routes.deps import admin

router = APIRouter(prefix="/v1/admin", tags=["rollouts"], dependencies=[Depends(admin)], route_class=JsonRoute)


@router.post("/rollouts", status_code=201)
def start_rollout(body: schemas.RolloutCreate, ctx: ServerContext = Depends(context)) -> schemas.RolloutOut:
    with ctx.db.write() as session:
        return rollouts.start(session, ctx.repo, ctx.storage, body, time.time())


@router.get("/rollouts")
def list_rollouts(all: bool = Query(True, description="include finished rollouts"), ctx: ServerContext = Depends(context)) -> list[schemas.RolloutOut]:
    with ctx.db.read() as session:
        return rollouts.list_rollouts(session, time.time(), all)


@router.get("/rollouts/{rollout_id}")
def show_rollout(rollout_id: str, ctx: ServerContext = Depends(context)) -> schemas.RolloutOut:
    with ctx.db.read() as session:
        return rollouts.rollout_out(rollouts.get_record(session, rollout_id), time.time())


@router.post("/rollouts/{rollout_id}/{action}")
def act_on_rollout(
    rollout_id: str, action: str, body: schemas.RolloutAction | None = None, ctx: ServerContext = Depends(context)
) -> schemas.RolloutOut:
    with ctx.db.write() as session:
        return rollouts.act(session, rollout_id, action, body or schemas.RolloutAction(), time.time())


@router.post("/experiments", status_code=201)
def start_experiment(body: schemas.ExperimentCreate, ctx: ServerContext = Depends(context)) -> schemas.ExperimentOut:
    with ctx.db.write() as session:
        return experiments.start(session, ctx.repo, body, time.time())


@router.get("/experiments")
def list_experiments(ctx: ServerContext = Depends(context)) -> list[schemas.ExperimentOut]:
    with ctx.db.read() as session:
        return experiments.list_experiments(session, time.time())


@router.get("/experiments/{experiment_id}")
def show_experiment(experiment_id: str, ctx: ServerContext = Depends(context)) -> schemas.ExperimentOut:
    with ctx.db.read() as session:
        return experiments.status(session, experiment_id, time.time())


@router.post("/webhooks", status_code=201)
def add_webhook(body: schemas.WebhookCreate, ctx: ServerContext = Depends(context)) -> schemas.WebhookOut:
    with ctx.db.write() as session:
        return webhooks.add(session, body)


@router.get("/webhooks")
def list_webhooks(ctx: ServerContext = Depends(context)) -> list[schemas.WebhookOut]:
    with ctx.db.read() as session:
        return webhooks.list_hooks(session)


@router.delete("/webhooks/{webhook_id}")
def remove_webhook(webhook_id: str, ctx: ServerContext = Depends(context)) -> schemas.WebhookOut:
    with ctx.db.write() as session:
        return webhooks.remove(session, webhook_id)
