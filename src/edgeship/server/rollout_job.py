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
import json
import logging
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import anyio
import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from edgeship.errors import EdgeshipError
from edgeship.rollout import DeviceView, RolloutState, Tally
from edgeship.rollout.codec import rollout_from_dict
from edgeship.server import experiments, rollouts, webhooks
from edgeship.server.context import ServerContext
from edgeship.server.db import Database
from edgeship.server.models import Lock, RolloutRecord
from edgeship.server.reports import FOLD_BATCH, changed_views, device_views, fold_events

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


# How far back each pass re-reads the change feed beyond its last one: a check-in stamped
# just before the previous pass may commit just after it, and instances' clocks differ a little.
CHANGE_LAG_S = 5.0


@dataclass
class FleetCache:
    """This instance's tally of each live rollout's fleet, and how far it has read the change feed.

    A rollout's tally is built from the whole fleet the first time this instance decides
    it; after that each pass reads only the devices changed since the last one
    (``reports.changed_views``), so a pass costs what changed, not the fleet. The tally
    belongs to the rollout's release, target and plan; its state is always read from the
    database, so another instance or an operator may move the rollout in between.
    """

    tallies: dict[str, tuple[str, Tally]] = field(default_factory=dict)  # rollout → (plan key, tally)
    # Per rollout, the state whose answers this instance last wrote for the whole fleet.
    written: dict[str, RolloutState] = field(default_factory=dict)
    read_until: datetime | None = None
    rows_read: int = 0  # device rows read by the last pass (the work ∝ changes)

    def catch_up(self, session: Session) -> tuple[list[DeviceView], list[str]] | None:
        """The devices changed since the last pass (and the IDs of those gone); None: no mark yet."""
        mark = datetime.now(timezone.utc) - timedelta(seconds=CHANGE_LAG_S)
        since, self.read_until = self.read_until, mark
        self.rows_read = 0
        if since is None or not self.tallies:
            return None
        changed, gone = changed_views(session, since)
        self.rows_read = len(changed) + len(gone)
        for _, tally in self.tallies.values():
            for view in changed:
                tally.update(view)
            for device_id in gone:
                tally.discard(device_id)
        return changed, gone

    def tally(self, session: Session, record: RolloutRecord) -> tuple[Tally, bool]:
        """The rollout's tally, and whether it is new (built from the whole fleet now)."""
        rollout = rollout_from_dict(record.document)
        key = json.dumps({k: v for k, v in record.document.items() if k != "state"}, sort_keys=True)
        cached = self.tallies.get(record.id)
        if cached is not None and cached[0] == key:
            return cached[1], False
        views = device_views(session)
        self.rows_read += len(views)
        # No placement cache: a check-in may change a device's facts, and so where it enters.
        tally = Tally(rollout, views)
        self.tallies[record.id] = (key, tally)
        return tally, True

    def forget_except(self, live: set[str]) -> None:
        for gone in set(self.tallies) - live:
            del self.tallies[gone]
            self.written.pop(gone, None)


def tick(ctx: ServerContext, now: float | None = None, cache: FleetCache | None = None) -> int:
    """One pass: fold events, then decide every live rollout and experiment; returns how many.

    ``cache`` (kept by ``run`` between passes) holds the rollouts' tallies; a fresh one,
    as on an instance's first pass, reads the whole fleet.
    """
    cache = FleetCache() if cache is None else cache
    release_ids = {f"{e['name']}@{e['version']}": e["release_id"] for e in ctx.repo.releases()} if ctx.repo.ready else {}
    while True:
        with ctx.db.write() as session:
            if fold_events(session, release_ids) < FOLD_BATCH:
                break
    with ctx.db.read() as session:
        live = session.execute(select(RolloutRecord.id, RolloutRecord.kind).where(RolloutRecord.live).order_by(RolloutRecord.created_at)).all()
        # Experiments still read the whole fleet, once per pass, outside the write lock.
        views = device_views(session) if any(kind == rollouts.EXPERIMENT for _, kind in live) else []
        delta = cache.catch_up(session)
    cache.forget_except({rollout_id for rollout_id, kind in live if kind == rollouts.ROLLOUT})
    try:
        for rollout_id, kind in live:
            with ctx.db.write() as session:
                record = rollouts.get_record(session, rollout_id, kind, lock=True)
                if not record.live:
                    continue  # another instance finished it while this one waited for the lock
                at = time.time() if now is None else now
                if kind == rollouts.EXPERIMENT:
                    experiments.assign(session, record, at, views)
                else:
                    _evaluate(session, record, at, cache, delta)
    except BaseException:
        # A write that did not commit leaves rows unwritten: the next pass rewrites them all.
        cache.written.clear()
        raise
    return len(live)


def _evaluate(
    session: Session, record: RolloutRecord, at: float, cache: FleetCache, delta: tuple[list[DeviceView], list[str]] | None
) -> None:
    tally, new = cache.tally(session, record)
    stored = rollout_from_dict(record.document).state
    # Only the changed devices' rows need a look if this instance wrote every row under the
    # state the rollout is in (and the decision keeps it there: ``evaluate`` checks that).
    changed = None
    if not new and delta is not None and cache.written.get(record.id) == stored:
        changed = {v.id for v in delta[0]} | set(delta[1])
    decision = rollouts.evaluate(session, record, at, tally=tally, changed=changed)
    cache.written[record.id] = decision.rollout.state


async def run(ctx: ServerContext) -> None:
    """Forever, every ``rollout_check_s`` seconds: a tick if this instance wins the turn, then webhook deliveries."""
    cache = FleetCache()
    with httpx.Client(timeout=10.0) as client:
        while True:
            try:
                if await anyio.to_thread.run_sync(claim_turn, ctx.db, TURN, ctx.settings.rollout_check_s):
                    await anyio.to_thread.run_sync(tick, ctx, None, cache)
                await anyio.to_thread.run_sync(webhooks.deliver_due, ctx.db, client, ctx.settings.webhook_retry_s)
            except (EdgeshipError, SQLAlchemyError) as exc:
                # Logged and retried next tick: a dead job would freeze every rollout silently.
                log.error("rollout job: %s", exc)
            await asyncio.sleep(ctx.settings.rollout_check_s)
