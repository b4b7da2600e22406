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
import dataclasses
import json
import logging
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import anyio
import httpx
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from edgeship.errors import EdgeshipError
from edgeship.rollout import Arms, DeviceView, RolloutState, Tally, reordered
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

# A live record's fleet, kept up to date one changed device at a time: a rollout's tally,
# an experiment's arms.
Book = Tally | Arms


def _plan_key(record: RolloutRecord) -> str:
    # Everything a book depends on: what the record targets and plans, not its state.
    plan = {k: v for k, v in record.document.items() if k != "state"}
    return json.dumps([record.kind, record.target, record.release_id, record.previous_release_id, plan], sort_keys=True)


def _book(record: RolloutRecord, views: list[DeviceView]) -> Book:
    if record.kind == rollouts.EXPERIMENT:
        return Arms(experiments.experiment_of(record), views)
    # No placement cache: a check-in may change a device's facts, and so where it enters.
    return Tally(rollout_from_dict(record.document), views)


@dataclass
class FleetCache:
    """This instance's book of each live rollout's and experiment's fleet, and how far it has read the change feed.

    A record's book is built from the whole fleet the first time this instance sees it;
    after that each pass reads only the devices changed since the last one
    (``reports.changed_views``), so a pass costs what changed, not the fleet. Every state a
    record is stored in comes with rows that match it for the whole fleet (whoever moved
    it wrote them in the same transaction), so a pass looks only at the rows of the devices
    that changed, that another record freed, or whose order the record's new state changes.
    """

    books: dict[str, tuple[str, Book]] = field(default_factory=dict)  # record → (plan key, book)
    # Per record, the state this instance last knew its stored rows to match; a record not
    # listed (new to this instance) has all its rows looked at.
    synced: dict[str, RolloutState | None] = field(default_factory=dict)
    # Devices whose rows a record withdrew, or whose order another hand changed: any record
    # may want them now, so the next pass looks at them too.
    freed: set[str] = field(default_factory=set)
    records: int = 0  # records stored when this instance last looked (none is ever deleted)
    read_until: datetime | None = None
    rows_read: int = 0  # device rows read by the last pass (the work ∝ changes)

    def catch_up(self, session: Session, live: list[RolloutRecord]) -> set[str]:
        """Bring every live record's book up to date; returns the devices changed since the last pass."""
        mark = datetime.now(timezone.utc) - timedelta(seconds=CHANGE_LAG_S)
        self.rows_read = 0
        changed: set[str] = set()
        if self.read_until is not None and self.books:
            views, gone = changed_views(session, self.read_until)
            self.rows_read = len(views) + len(gone)
            for _, book in self.books.values():
                for view in views:
                    book.update(view)
                for device_id in gone:
                    book.discard(device_id)
            changed = {v.id for v in views} | set(gone)
        left = set(self.books) - {r.id for r in live}
        if left:  # finished: by this instance, or by an operator (whose abort may have freed rows)
            for record in session.scalars(select(RolloutRecord).where(RolloutRecord.id.in_(left))):
                self.rebase(record)
            for record_id in left:
                del self.books[record_id]
                self.synced.pop(record_id, None)
        new = [r for r in live if self.books.get(r.id, ("",))[0] != _plan_key(r)]
        for record in live:
            if record not in new:
                self.rebase(record)
        records = session.scalar(select(func.count()).select_from(RolloutRecord)) or 0
        if new or records != self.records:
            # A record this instance never saw may have taken rows and freed them again
            # (started, then paused or aborted): every record looks at all its rows once.
            self.synced.clear()
            self.records = records
        if new:
            fleet = device_views(session)
            self.rows_read += len(fleet)
            for record in new:
                self.books[record.id] = (_plan_key(record), _book(record, fleet))
        self.read_until = mark  # only now: a failed read is read again next pass
        return changed

    def rebase(self, record: RolloutRecord) -> None:
        """Take the record's stored state as the one its rows match; if another hand moved it
        (an operator, another instance), the devices whose order that changed join ``freed``."""
        if record.id not in self.synced or record.kind == rollouts.EXPERIMENT:  # an experiment's answers never move
            return
        rollout, seen = rollout_from_dict(record.document), self.synced[record.id]
        if rollout.state == seen:
            return
        tally = self.books[record.id][1]
        assert isinstance(tally, Tally) and seen is not None  # only rollouts have states
        self.freed |= reordered(tally, dataclasses.replace(rollout, state=seen), rollout)
        self.synced[record.id] = rollout.state


def tick(ctx: ServerContext, now: float | None = None, cache: FleetCache | None = None) -> int:
    """One pass: fold events, then decide every live rollout and experiment; returns how many.

    ``cache`` (kept by ``run`` between passes) holds the records' books; a fresh one, as on
    an instance's first pass, reads the whole fleet.
    """
    cache = FleetCache() if cache is None else cache
    release_ids = {f"{e['name']}@{e['version']}": e["release_id"] for e in ctx.repo.releases()} if ctx.repo.ready else {}
    while True:
        with ctx.db.write() as session:
            if fold_events(session, release_ids) < FOLD_BATCH:
                break
    with ctx.db.read() as session:
        live = list(session.scalars(select(RolloutRecord).where(RolloutRecord.live).order_by(RolloutRecord.created_at)))
        # The fleet is read here, outside the write lock: whole once per record, then only changes.
        looked = cache.catch_up(session, live) | cache.freed
    cache.freed = set()
    try:
        for rollout_id, kind in [(r.id, r.kind) for r in live]:
            with ctx.db.write() as session:
                record = rollouts.get_record(session, rollout_id, kind, lock=True)
                if not record.live:
                    continue  # another instance finished it while this one waited for the lock
                at = time.time() if now is None else now
                cache.rebase(record)  # moved since the read above: by an operator, or another instance
                only = looked | cache.freed if record.id in cache.synced else None
                book = cache.books[record.id][1]
                state: RolloutState | None = None  # what of a record moves after it starts: a rollout's state
                if isinstance(book, Arms):
                    withdrawn = experiments.assign(session, record, at, book.releases, only)
                else:
                    decision, withdrawn = rollouts.evaluate(session, record, at, tally=book, changed=only)
                    state = decision.rollout.state  # as stored in the record's document
            cache.synced[record.id] = state  # committed: the rows match this state
            cache.freed.update(withdrawn)
    except BaseException:
        # Rows a failed transaction did not write are looked at again next pass.
        cache.freed |= looked
        raise
    return len(live)


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
