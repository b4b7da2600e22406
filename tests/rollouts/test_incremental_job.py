"""The rollout job reads only what changed: each pass with a cache decides exactly like a full
recompute over the whole fleet, and reads device rows in proportion to the changes (a million
rows in PostgreSQL)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from edgeship.release.manifest import Requirements
from edgeship.rollout import decide
from edgeship.rollout.codec import rollout_from_dict, rollout_to_dict
from edgeship.server.db import Database
from edgeship.server.models import Device, DeviceReport, RolloutAssignment, RolloutRecord
from edgeship.server.reports import device_views
from edgeship.server import rollout_job
from edgeship.server.rollout_job import FleetCache, tick
from tests.helpers.fleet_rows import NEW, OLD, an_hour_ago, check_in, job_context, seed_devices, start_rollout
from tests.helpers.server import fresh_database_url, postgres_schema  # noqa: F401 - fresh_database_url is a fixture

N = 300


@pytest.fixture
def db(fresh_database_url: str) -> Iterator[Database]:
    database = Database(fresh_database_url)
    database.migrate()
    yield database
    database.dispose()


def _device(i: int, seen: datetime) -> Device:
    return Device(
        id=f"dev-{i:07d}", secret_hash="0" * 64, tags={"ring": "main", "site": f"s{i % 3}"},
        facts={"ram": 8 << 30, "arch": "arm64" if i % 3 else "x86_64"}, state="committed",
        current={"name": "detector", "version": "1.0.0", "release_id": OLD}, enrolled_at=seen, last_seen_at=seen,
    )


def _change(dbs: list[Database], rng: random.Random, ids: list[str], ordered: list[str]) -> None:
    """A random slice of fleet life, the same in each database: installs (mostly by devices
    told to), failures, health reports, new and departed devices."""
    now = datetime.now(timezone.utc)
    told = rng.sample(ordered, min(20, len(ordered)))
    # Told devices mostly install; the others mostly check in and report health.
    reports = [(d, rng.random() * (0.6 if d in told else 1.6), rng.choice([0.0, 0.01, 0.02]), rng.choice([100.0, 110.0]))
               for d in sorted(set(told + rng.sample(ids, 25 - len(told))))]
    leaving = rng.sample(ids, 2)
    new = len(ids)
    ids.append(f"dev-{new:07d}")
    for db in dbs:
        with db.write() as session:
            for device_id, kind, error_rate, latency in reports:
                device = session.get(Device, device_id)
                assert device is not None
                device.last_seen_at = now
                if kind < 0.5:
                    device.current = {"name": "detector", "version": "2.0.0", "release_id": NEW}
                report = session.get(DeviceReport, device_id) or DeviceReport(device_id=device_id)
                report.state = "failed" if kind > 0.97 else "committed"
                report.target_release_id = NEW if kind > 0.97 or kind < 0.5 else OLD
                report.health_release_id = NEW if kind < 0.5 else OLD
                report.health = {"error_rate": error_rate, "latency_p95_ms": latency}
                report.folded_at = now
                session.add(report)
            for device_id in leaving:
                device = session.get(Device, device_id)
                assert device is not None
                if device.decommissioned_at is None:
                    device.decommissioned_at = now
            session.add(_device(new, now))


def _rows(db: Database) -> dict[str, tuple[str, bool]]:
    with db.read() as session:
        return {r.device_id: (r.release_id, r.rollback) for r in session.scalars(select(RolloutAssignment))}


def test_each_cached_pass_decides_like_a_full_recompute(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    # No re-read margin, so the rows a pass reads are exactly the last slice's changes.
    monkeypatch.setattr(rollout_job, "CHANGE_LAG_S", 0.0)
    rng = random.Random(7)
    seen = an_hour_ago()
    with db.write() as session:
        session.add_all([_device(i, seen) for i in range(N)])
    ids = [f"dev-{i:07d}" for i in range(N)]
    now = 1_000_000.0
    with db.write() as session:
        start_rollout(session, now, stages=(10.0, 30.0, 100.0))
    cache, ctx = FleetCache(), job_context(db)
    for step in range(8):
        with db.read() as session:
            record = session.get(RolloutRecord, "ro-bulk")
            assert record is not None
            before = rollout_from_dict(record.document)
            views = device_views(session)
        now += 700.0  # past each bake
        tick(ctx, now, cache)
        expected = decide(before, views, now)
        with db.read() as session:
            record = session.get(RolloutRecord, "ro-bulk")
            assert record is not None
            assert record.document == rollout_to_dict(expected.rollout), step
            assert record.summary == {**expected.summary(), "evaluated_at": now}
        wanted = {d: (a.release, a.rollback) for d, a in expected.assignments.items() if a.release is not None}
        assert _rows(db) == wanted, step
        if step:
            assert 0 < cache.rows_read <= 28  # 25 changed, 2 departed, 1 new: not the fleet
        _change([db], rng, ids, sorted(wanted))
    assert expected.rollout.state.phase > 0  # the rollout moved through its stages on the way


def test_a_device_whose_facts_change_is_placed_again(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollout_job, "CHANGE_LAG_S", 0.0)
    seen = an_hour_ago()
    small = [_device(i, seen) for i in range(20)]
    for d in small:
        d.facts = {"ram": 1 << 30, "arch": "arm64"}
    big = [_device(i, seen) for i in range(20, 30)]  # still to install: the rollout stays live
    with db.write() as session:
        session.add_all(small + big)
        start_rollout(session, 0.0, stages=(100.0,), requirements=Requirements(min_ram=2 << 30))
    cache, ctx = FleetCache(), job_context(db)
    tick(ctx, 1.0, cache)
    with db.write() as session:
        device = session.get(Device, small[0].id)
        assert device is not None
        device.facts = {"ram": 8 << 30, "arch": "arm64"}  # reported at check-in: the board was upgraded
        device.last_seen_at = datetime.now(timezone.utc)
    tick(ctx, 2.0, cache)
    with db.read() as session:
        record = session.get(RolloutRecord, "ro-bulk")
        assert record is not None
        assert record.summary["skipped"] == 19
    assert _rows(db) == {d.id: (NEW, False) for d in [small[0], *big]}


MILLION = 1_000_000


@pytest.mark.slow  # the million rows are one INSERT … generate_series; the first pass reads them all once
def test_a_pass_over_a_million_devices_reads_only_the_changed_rows() -> None:
    with postgres_schema() as url:
        db = Database(url)
        try:
            db.migrate()
            now = 2_000_000.0
            with db.write() as session:
                seed_devices(session, MILLION, an_hour_ago())
                start_rollout(session, now)
            cache, ctx = FleetCache(), job_context(db)
            tick(ctx, now, cache)  # builds the tally: the whole fleet, once
            assert cache.rows_read == MILLION
            with db.read() as session:
                first = sorted(session.scalars(select(RolloutAssignment.device_id).limit(200)))
            with db.write() as session:
                check_in(session, first, NEW)
            tick(ctx, now + 1, cache)
            assert cache.rows_read == len(first) == 200
            with db.read() as session:
                record = session.get(RolloutRecord, "ro-bulk")
                assert record is not None
                stage = record.summary["stages"][0]
            assert stage["done"] == 200
            assert 9_000 < stage["targeted"] < 11_000  # 1 % of a million
        finally:
            db.dispose()
