"""Rollout engine figures: decisions per second for 100,000 devices, a decision from a tally
fed only the changed reports and, with --pg, one rollout-job pass over a million device rows
in PostgreSQL: today's full re-read against the cached pass that reads only the changed rows.
Full simulated rollouts (``edgeship simulate``) are measured by benchmarks/simulate.py.

Run: python benchmarks/rollout.py [--devices 100000] [--repeat 5]
     [--pg postgresql+psycopg://user:pw@host/db --rows 1000000 --changed 1000]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from edgeship.rollout import (
    DeviceFacts,
    DeviceState,
    DeviceView,
    HealthMetrics,
    Rollout,
    RolloutPolicy,
    Tally,
    decide,
    decide_tally,
    place,
)


def fleet(n: int) -> list[DeviceView]:
    rng = random.Random(0)
    return [
        DeviceView(
            f"dev-{i:06d}",
            {"ring": "pilot" if i < n // 200 else "main", "site": rng.choice(["berlin", "tokyo", "austin"])},
            DeviceFacts(ram=rng.choice([4, 8, 16]) << 30, arch=rng.choice(["arm64", "x86_64"]), timezone="UTC"),
            # Half the fleet mid-rollout so every branch of the engine runs.
            current="new" if i % 2 else "old",
            state=rng.choice(list(DeviceState)),
            target="new",
            health=HealthMetrics(rng.uniform(0, 0.02), rng.uniform(50, 500)),
        )
        for i in range(n)
    ]


def bench_decide(n: int, repeat: int) -> None:
    devices = fleet(n)
    rollout = Rollout("bench", "new", previous_release="old", policy=RolloutPolicy())
    rollout = dataclasses.replace(rollout, state=dataclasses.replace(rollout.state, phase=3))
    t0 = time.perf_counter()
    placement = place(rollout, devices)
    placed = time.perf_counter() - t0
    cold = _best(lambda: decide(rollout, devices, 0.0), repeat)
    warm = _best(lambda: decide(rollout, devices, 0.0, placement), repeat)
    print(f"engine, {n:,} devices:")
    print(f"  place (hash cohorts, requirements)  {placed:6.3f} s")
    print(f"  decide without placement cache      {cold:6.3f} s  = {n / cold:>10,.0f} device decisions/s")
    print(f"  decide with placement cache         {warm:6.3f} s  = {n / warm:>10,.0f} device decisions/s")
    tally = Tally(rollout, devices, placement)
    changed = [dataclasses.replace(d, current="new", state=DeviceState.COMMITTED) for d in devices[: n // 100]]

    def incremental() -> None:
        for d in changed:
            tally.update(d)
        decide_tally(rollout, tally, 0.0)

    inc = _best(incremental, repeat)
    print(f"  tally fed {len(changed):,} changed reports + decide {inc:6.3f} s  = x{warm / inc:,.0f} faster than decide with cache")


def bench_job(url: str, rows: int, changed: int) -> None:
    """One rollout-job pass over ``rows`` device rows: the full re-read, then the cached pass."""
    # The server is an optional extra, and the fleet rows come from the tests' helpers.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from sqlalchemy import select

    from edgeship.server.db import Database
    from edgeship.server.models import RolloutAssignment
    from edgeship.server.rollout_job import FleetCache, tick
    from tests.helpers.fleet_rows import NEW, an_hour_ago, check_in, job_context, seed_devices, start_rollout
    from tests.helpers.server import postgres_schema

    os.environ.setdefault("EDGESHIP_TEST_DATABASE_URL", url)
    with postgres_schema() as schema_url:
        db = Database(schema_url)
        try:
            db.migrate()
            now = datetime.now(timezone.utc).timestamp()
            t0 = time.perf_counter()
            with db.write() as session:
                seed_devices(session, rows, an_hour_ago())
                start_rollout(session, now)
            print(f"rollout job, {rows:,} device rows in PostgreSQL (seeded in {time.perf_counter() - t0:.1f} s):")
            ctx = job_context(db)
            tick(ctx, now)  # the rollout's first pass writes the first stage's rows
            # A pass with a fresh cache reads and decides the whole fleet: what every pass did
            # before the tallies (and what an instance's first pass still does).
            cache = FleetCache()
            t0 = time.perf_counter()
            tick(ctx, now + 1, cache)
            full = time.perf_counter() - t0
            print(f"  pass reading the whole fleet (every pass, before)  {full:6.2f} s, {cache.rows_read:,} rows read")
            with db.read() as session:
                ids = list(session.scalars(select(RolloutAssignment.device_id).limit(changed)))
            with db.write() as session:
                check_in(session, ids, NEW)
            t0 = time.perf_counter()
            tick(ctx, now + 2, cache)
            inc = time.perf_counter() - t0
            print(f"  next pass, after {len(ids):,} check-ins             {inc:6.2f} s, {cache.rows_read:,} rows read  = x{full / inc:,.0f} faster")
        finally:
            db.dispose()


def _best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pg", help="a PostgreSQL URL: measure the rollout job over --rows device rows in a new schema")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--changed", type=int, default=1000, help="devices that check in between the two cached passes")
    args = parser.parse_args()
    bench_decide(args.devices, args.repeat)
    if args.pg:
        bench_job(args.pg, args.rows, args.changed)


if __name__ == "__main__":
    main()
