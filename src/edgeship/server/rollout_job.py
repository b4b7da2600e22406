"""The rollout job: every few seconds, fold new device events and re-decide each live rollout.

Check-in never runs the engine; it reads the row this job materialized. Every instance
runs the loop, but a pass starts only on the instance that wins the ``rollout_job`` turn
(a conditional UPDATE of its ``locks`` row: one winner per interval across instances, and
when that instance dies the next interval goes to another). Each rollout is still decided
in its own write transaction holding ``SELECT … FOR UPDATE`` on its row (on SQLite the
database write lock), so a pass that overruns its turn cannot decide from stale state.
Webhook deliveries are leased one by one (``webhooks.deliver_due``), so every instance may
send them and none sends one twice.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from datetime import datetime, timedelta, timezone

import anyio
import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from edgeship.errors import EdgeshipError
from edgeship.server import experiments, rollouts, webhooks
from edgeship.server.context import ServerContext
from edgeship.server.db import Database
from edgeship.server.models import Lock, RolloutRecord
from edgeship.server.reports import FOLD_BATCH, device_views, fold_events

log = logging.getLogger("edgeship.server.rollouts")

TURN = "rollout_job"


def claim_turn(db: Database, name: str, every_s: float) -> bool:
    """True for exactly one caller per ``every_s`` across all instances sharing ``db``.

    The WHERE is re-checked after a concurrent UPDATE commits (PostgreSQL re-reads the row it
    waited for; SQLite has one writer), so of two instances only the first sees the turn due.
    """
    now = datetime.now(timezone.utc)
    due = or_(Lock.acquired_at.is_(None), Lock.acquired_at <= now - timedelta(seconds=every_s))
    with db.write() as session:
        won = session.execute(
            update(Lock).where(Lock.name == name, due).values(holder=socket.gethostname(), acquired_at=now).execution_options(synchronize_session=False)
        ).rowcount
    return won == 1


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
    """Forever, every ``rollout_check_s`` seconds: a tick if this instance wins the turn, then webhook deliveries."""
    with httpx.Client(timeout=10.0) as client:
        while True:
            try:
                if await anyio.to_thread.run_sync(claim_turn, ctx.db, TURN, ctx.settings.rollout_check_s):
                    await anyio.to_thread.run_sync(tick, ctx)
                await anyio.to_thread.run_sync(webhooks.deliver_due, ctx.db, client, ctx.settings.webhook_retry_s)
            except (EdgeshipError, SQLAlchemyError) as exc:
                # Logged and retried next tick: a dead job would freeze every rollout silently.
                log.error("rollout job: %s", exc)
            await asyncio.sleep(ctx.settings.rollout_check_s)
