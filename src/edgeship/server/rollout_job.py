"""The rollout job: every few seconds, fold new device events and re-decide each live rollout.

Check-in never runs the engine; it reads the row this job materialized. Each rollout is
decided in its own write transaction holding ``SELECT … FOR UPDATE`` on its row (on SQLite
the database write lock), so several server instances can all run this job: they take
turns, and each decides from what the previous one stored.
"""

from __future__ import annotations

import asyncio
import logging
import time

import anyio
import httpx
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from edgeship.errors import EdgeshipError
from edgeship.server import experiments, rollouts, webhooks
from edgeship.server.context import ServerContext
from edgeship.server.models import RolloutRecord
from edgeship.server.reports import FOLD_BATCH, device_views, fold_events

log = logging.getLogger("edgeship.server.rollouts")

def tick(ctx: ServerContext, now: float | None = None) -> int:
    """One pass: fold events, then decide every live rollout and experiment; returns how many."""
    release_ids = {f"{e['name']}@{e['version']}": e["release_id"] for e in ctx.repo.releases()} if ctx.repo.ready else {}
    while True:
        with ctx.db.write() as session:
            if fold_events(session, release_ids) < FOLD_BATCH:
                break
    with ctx.db.read() as session:
        live = session.execute(select(RolloutRecord.id, RolloutRecord.kind).where(RolloutRecord.live).order_by(RolloutRecord.created_at)).all()
        # Read once, outside the write lock: every rollout of this tick decides from it.
        views = device_views(session) if live else []
    for rollout_id, kind in live:
        with ctx.db.write() as session:
            record = rollouts.get_record(session, rollout_id, kind, lock=True)
            if not record.live:
                continue  # another instance finished it while this one waited for the lock
            at = time.time() if now is None else now
            if kind == rollouts.EXPERIMENT:
                experiments.assign(session, record, at, views)
            else:
                rollouts.evaluate(session, record, at, views)
    return len(live)


async def run(ctx: ServerContext) -> None:
    """Forever: a tick, then webhook deliveries, every ``rollout_check_s`` seconds."""
    with httpx.Client(timeout=10.0) as client:
        while True:
            try:
                await anyio.to_thread.run_sync(tick, ctx)
                await anyio.to_thread.run_sync(webhooks.deliver_due, ctx.db, client, ctx.settings.webhook_retry_s)
            except (EdgeshipError, SQLAlchemyError) as exc:
                # Logged and retried next tick: a dead job would freeze every rollout silently.
                log.error("rollout job: %s", exc)
            await asyncio.sleep(ctx.settings.rollout_check_s)
