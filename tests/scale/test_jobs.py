"""Background jobs across instances: the rollout job's turn goes to one instance per interval,
and a webhook delivery is sent by one instance however many poll the outbox."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone

import httpx
import pytest

from edgeship.server.db import Database
from edgeship.server.models import Webhook, WebhookDelivery
from edgeship.server.rollout_job import TURN, claim_turn
from edgeship.server.webhooks import deliver_due
from tests.rollouts.conftest import Receiver

INSTANCES = 3


@pytest.fixture
def databases(fresh_database_url: str) -> Iterator[list[Database]]:
    """One migrated database, opened once per (simulated) instance."""
    dbs = [Database(fresh_database_url) for _ in range(INSTANCES)]
    dbs[0].migrate()
    yield dbs
    for db in dbs:
        db.dispose()  # before a PostgreSQL schema is dropped


def _race(dbs: list[Database], call: object) -> list[object]:
    """Run ``call(db)`` on every instance at once; the results."""
    results: list[object] = []
    barrier = threading.Barrier(len(dbs))

    def one(db: Database) -> None:
        barrier.wait()
        results.append(call(db))  # type: ignore[operator]

    threads = [threading.Thread(target=one, args=(db,)) for db in dbs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_one_instance_gets_each_turn_of_the_rollout_job(databases: list[Database]) -> None:
    assert sorted(_race(databases, lambda db: claim_turn(db, TURN, 0.5))) == [False, False, True]
    assert not any(_race(databases, lambda db: claim_turn(db, TURN, 0.5)))  # the interval has not passed
    time.sleep(0.6)
    assert sorted(_race(databases, lambda db: claim_turn(db, TURN, 0.5))) == [False, False, True]


def test_each_webhook_delivery_is_sent_once_by_racing_instances(databases: list[Database]) -> None:
    receiver = Receiver()
    url = receiver.start()
    try:
        now = datetime.now(timezone.utc)
        with databases[0].write() as session:
            session.add(Webhook(id="whk_test", url=url, secret="s", created_at=now))
            session.flush()
            for i in range(20):
                session.add(WebhookDelivery(webhook_id="whk_test", payload={"type": "test", "n": i}, attempts=0, next_attempt_at=now, last_error=""))
        with httpx.Client(timeout=5) as client:
            sent = _race(databases, lambda db: deliver_due(db, client, 1.0))
        assert sum(sent) == 20  # type: ignore[arg-type]
        assert sorted(p["n"] for p in receiver.payloads("s")) == list(range(20))
        with databases[0].read() as session:
            assert all(d.delivered_at is not None and d.attempts == 1 for d in session.query(WebhookDelivery))
    finally:
        receiver.stop()
