"""The rollout job reads only what changed: each pass with a cache decides exactly like a full
recompute over the whole fleet, and reads device rows in proportion to the changes (a million
rows in PostgreSQL)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from edgeship.errors import ConflictError
from edgeship.release.manifest import Requirements
from edgeship.rollout import decide
from edgeship.rollout.codec import rollout_from_dict, rollout_to_dict
from edgeship.server.db import Database
from edgeship.server.models import Device, DeviceReport, RolloutAssignment, RolloutRecord
from edgeship.server.reports import device_views
from edgeship.server import experiments, fleet, rollout_job, rollouts
from edgeship.server.rollout_job import FleetCache, tick
from edgeship.server.rollout_schemas import RolloutAction
from tests.helpers.fleet_rows import NEW, OLD, an_hour_ago, check_in, enroll, job_context, seed_devices, start_experiment, start_rollout
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


@pytest.fixture(params=["sqlite", "postgresql"])
def twins(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Database, Database]]:
    """Two empty, migrated databases of one backend: one for the cached job, one for the full job."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            urls = [f"sqlite:///{tmp_path / name}.db" for name in ("cached", "full")]
        else:
            urls = [stack.enter_context(postgres_schema()) for _ in range(2)]
        dbs = []
        for url in urls:
            database = Database(url)
            stack.callback(database.dispose)
            database.migrate()
            dbs.append(database)
        yield dbs[0], dbs[1]


def _stored(db: Database) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """Everything the job writes: each record's state and summary, every device's row."""
    with db.read() as session:
        records = [(r.id, r.status, r.live, r.document, r.summary) for r in session.scalars(select(RolloutRecord).order_by(RolloutRecord.id))]
        rows = [tuple(r) for r in session.execute(select(RolloutAssignment.__table__).order_by(RolloutAssignment.device_id))]
    return records, rows


def _act(dbs: list[Database], rollout_id: str, action: str, rollback: bool, now: float) -> None:
    """An operator's action on a rollout through the API's code, the same in each database."""
    outcomes = []
    for db in dbs:
        try:
            with db.write() as session:
                rollouts.act(session, rollout_id, action, RolloutAction(rollback=rollback), now)
            outcomes.append("done")
        except ConflictError as exc:
            outcomes.append(exc.message)
    assert outcomes[0] == outcomes[1]


def _fail(dbs: list[Database], rng: random.Random, ordered: list[str]) -> None:
    """Some devices told to install fail to: the job pauses the rollout over its budget."""
    now = datetime.now(timezone.utc)
    failing = rng.sample(ordered, min(len(ordered), 5))
    for db in dbs:
        with db.write() as session:
            for device_id in failing:
                report = session.get(DeviceReport, device_id) or DeviceReport(device_id=device_id)
                report.state, report.target_release_id, report.folded_at = "failed", NEW, now
                session.add(report)


def _start(dbs: list[Database], kind: str, record_id: str, target: str, now: float, duration: float = 86400.0) -> None:
    """A record started as the API starts one, rows for the whole fleet at once."""
    for db in dbs:
        with db.write() as session:
            if kind == "experiment":
                experiments.assign(session, start_experiment(session, now, record_id, target, duration), now)
            else:
                record = start_rollout(session, now, (50.0, 100.0), rollout_id=record_id, release=(TRACKER, "tracker@1.0.0"), target=target)
                rollouts.evaluate(session, record, now)


TRACKER = "d" * 64


@pytest.mark.parametrize("seed", range(1, 6))  # together they take every path that keeps the two apart (checked by breaking each)
def test_a_cached_job_stores_what_a_job_reading_the_whole_fleet_stores(
    twins: tuple[Database, Database], seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rollouts and experiments sharing devices (the newer record's row wins), operator
    actions, failures that pause a rollout, records started between passes, random fleet
    changes: after every pass, the job that keeps its books stores exactly what a job
    reading the whole fleet on every pass stores."""
    monkeypatch.setattr(rollout_job, "CHANGE_LAG_S", 0.0)
    rng = random.Random(seed)
    dbs = list(twins)
    seen = an_hour_ago()
    now = 1_000_000.0
    for db in dbs:
        with db.write() as session:
            session.add_all([_device(i, seen) for i in range(N)])
    # Sites s0-s2: an experiment on s1, older or newer than the rollout over the fleet.
    experiment_first = rng.random() < 0.5
    _start(dbs, "experiment", "ab-one", "site=s1", now - 1 if experiment_first else now + 1, 5000.0)
    for db in dbs:
        with db.write() as session:
            start_rollout(session, now, stages=(10.0, 30.0, 100.0))
    ids = [f"dev-{i:07d}" for i in range(N)]
    cache, cached, full = FleetCache(), job_context(dbs[0]), job_context(dbs[1])
    later = {rng.randrange(1, 8): ("experiment", "ab-two", "site=s2"), rng.randrange(1, 8): ("rollout", "ro-two", "site=s1")}
    owners: set[str] = set()
    for step in range(10):
        now += 700.0  # past each bake
        tick(cached, now, cache)
        tick(full, now, FleetCache())
        stored = _stored(dbs[0])
        assert stored == _stored(dbs[1]), step
        if step and step - 1 not in later:  # not a pass that builds a new record's book
            assert cache.rows_read <= 33  # the changes, not the fleet
        owners |= {r[1] for r in stored[1]}
        ordered = [r[0] for r in stored[1] if r[1] == "ro-bulk"]
        _change(dbs, rng, ids, ordered)
        if step in later:
            _start(dbs, *later[step], now)
        if rng.random() < 0.2:
            _fail(dbs, rng, ordered)
        live = [r[0] for r in stored[0] if r[0].startswith("ro-") and r[2]]
        if later.get(step, ("",))[0] == "rollout" and rng.random() < 0.6:
            # Started and stopped before any pass saw it: the rows it took, it gave back.
            _act(dbs, "ro-two", rng.choice(["pause", "abort"]), rng.random() < 0.5, now)
        elif live and rng.random() < 0.5:
            _act(dbs, rng.choice(live), rng.choice(["pause", "resume", "abort", "promote"]), rng.random() < 0.5, now)
    assert owners >= {"ro-bulk", "ab-one"}  # the records shared the fleet's rows


MILLION = 1_000_000


@dataclass
class Million:
    db: Database
    cache: FleetCache
    now: float


@pytest.fixture(scope="module")
def million() -> Iterator[Million]:
    """A million device rows in PostgreSQL with a live rollout and a newer experiment (site s0,
    a seventh of the fleet), after the job's first pass: built once for the tests below."""
    with postgres_schema() as url:
        db = Database(url)
        try:
            db.migrate()
            now = 2_000_000.0
            with db.write() as session:
                seed_devices(session, MILLION, an_hour_ago())
                start_rollout(session, now)
                start_experiment(session, now + 1)
            cache = FleetCache()
            tick(job_context(db), now, cache)  # both books from one read of the whole fleet
            assert cache.rows_read == MILLION
            yield Million(db, cache, now)
        finally:
            db.dispose()


@contextmanager
def rows_fetched(db: Database) -> Iterator[list[int]]:
    """Counts the rows every SELECT in ``db`` returns meanwhile: what the job read, by any path."""
    fetched = [0]

    def count(conn: object, cursor: Any, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")) and cursor.rowcount > 0:
            fetched[0] += cursor.rowcount

    event.listen(db.engine, "after_cursor_execute", count)
    try:
        yield fetched
    finally:
        event.remove(db.engine, "after_cursor_execute", count)


@pytest.mark.slow  # the million rows are one INSERT … generate_series; the first pass reads them all once
def test_a_rollout_pass_over_a_million_devices_reads_only_the_changed_rows(million: Million, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollout_job, "CHANGE_LAG_S", 0.0)  # the other test's changes are not read again
    db = million.db
    with db.read() as session:
        first = sorted(session.scalars(select(RolloutAssignment.device_id).where(RolloutAssignment.rollout_id == "ro-bulk").limit(200)))
    with db.write() as session:
        check_in(session, first, NEW)
    with rows_fetched(db) as fetched:
        tick(job_context(db), million.now + 1, million.cache)
    assert million.cache.rows_read == len(first) == 200
    assert fetched[0] < 1_000  # the changed devices, their rows, the records
    with db.read() as session:
        record = session.get(RolloutRecord, "ro-bulk")
        assert record is not None
        stage = record.summary["stages"][0]
    assert stage["done"] == 200
    assert 9_000 < stage["targeted"] < 11_000  # 1 % of a million


@pytest.mark.slow
def test_an_experiment_pass_over_a_million_devices_reads_only_the_changed_rows(million: Million, monkeypatch: pytest.MonkeyPatch) -> None:
    """1,000 devices change under a live experiment: 980 check in, 10 of its site enroll, 10 of
    its devices leave. The pass reads those rows, gives the new devices their arm and takes the
    departed devices' rows back."""
    monkeypatch.setattr(rollout_job, "CHANGE_LAG_S", 0.0)  # the other test's changes are not read again
    db = million.db
    rng = random.Random(3)
    with db.read() as session:
        held = list(session.scalars(select(RolloutAssignment.device_id).where(RolloutAssignment.rollout_id == "ab-bulk").limit(2000)))
        record = session.get(RolloutRecord, "ab-bulk")
        assert record is not None
        experiment = experiments.experiment_of(record)
    leaving = rng.sample(held, 10)
    joining = [f"dev-9{i:06d}" for i in range(10)]
    checking_in = [f"dev-{i:07d}" for i in rng.sample(range(MILLION), 1000) if f"dev-{i:07d}" not in leaving][:980]
    with db.write() as session:
        check_in(session, checking_in, OLD)
        for device_id in leaving:
            fleet.decommission(session, device_id)
        enroll(session, joining, "s0")
    with rows_fetched(db) as fetched:
        tick(job_context(db), million.now + 2, million.cache)
    assert million.cache.rows_read == 1000
    assert fetched[0] < 3_000  # the changed devices, their rows, the records: not the fleet
    with db.read() as session:
        rows = dict(session.execute(select(RolloutAssignment.device_id, RolloutAssignment.release_id).where(
            RolloutAssignment.device_id.in_(leaving + joining))).all())
    assert rows == {d: experiment.release_of(d) for d in joining}
