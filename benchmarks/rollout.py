"""Rollout engine figures: decisions per second for 100,000 devices, a decision from a tally
fed only the changed reports and, with --pg, rollout-job passes over a million device rows in
PostgreSQL with a live rollout and a live experiment: the full re-read against cached passes
that read only the changed rows. Full simulated rollouts (``edgeship simulate``) are measured
by benchmarks/simulate.py.

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
    """Rollout-job passes over ``rows`` device rows with a live rollout and a live experiment:
    the full re-read, then cached passes after ``changed`` devices change."""
    # The server is an optional extra, and the fleet rows come from the tests' helpers.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from sqlalchemy import select

    from edgeship.server import experiments, rollouts
    from edgeship.server.fleet import decommission
    from edgeship.server.db import Database
    from edgeship.server.models import RolloutAssignment, RolloutRecord
    from edgeship.server.rollout_job import CHANGE_LAG_S, FleetCache, tick
    from edgeship.server.rollout_schemas import RolloutAction
    from tests.helpers.fleet_rows import NEW, OLD, an_hour_ago, check_in, enroll, job_context, seed_devices, start_experiment, start_rollout
    from tests.helpers.server import postgres_schema

    def timed(fn: Callable[[], object]) -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - t0, time.process_time() - c0

    def line(label: str, wall: float, cpu: float, rest: str = "") -> None:
        # CPU: this process only (the job's Python); PostgreSQL's share is in the wall time.
        print(f"  {label:<68}{wall:7.2f} s ({cpu:6.2f} s CPU){rest}")

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
                start_experiment(session, now + 1)  # site s0: a seventh of the fleet, half on each arm
            print(f"rollout job, {rows:,} device rows in PostgreSQL (seeded in {time.perf_counter() - t0:.1f} s), "
                  f"a live rollout and a live experiment (load average {os.getloadavg()[0]:.1f}):")
            ctx = job_context(db)
            tick(ctx, now)  # the first pass writes the first stage's and the experiment's rows
            # A pass with a fresh cache reads and decides the whole fleet: what every pass did
            # before the books (and what an instance's first pass still does).
            cache = FleetCache()
            full, full_cpu = timed(lambda: tick(ctx, now + 1, cache))
            line("pass reading the whole fleet (an instance's first)", full, full_cpu, f", {cache.rows_read:,} rows read")

            def whole_experiment() -> None:  # what every pass cost per live experiment before
                with db.write() as session:
                    record = session.get(RolloutRecord, "ab-bulk")
                    assert record is not None
                    experiments.assign(session, record, now + 1)

            exp_full, exp_full_cpu = timed(whole_experiment)
            line("the experiment alone, reading the whole fleet (every pass before)", exp_full, exp_full_cpu)
            with db.read() as session:
                ids = list(session.scalars(select(RolloutAssignment.device_id).where(RolloutAssignment.rollout_id == "ro-bulk").limit(changed)))
                held = list(session.scalars(select(RolloutAssignment.device_id).where(RolloutAssignment.rollout_id == "ab-bulk").limit(changed)))
            with db.write() as session:
                check_in(session, ids, NEW)
            time.sleep(CHANGE_LAG_S)  # so the next pass is the last to re-read these check-ins
            inc, inc_cpu = timed(lambda: tick(ctx, now + 2, cache))
            line(f"next pass, after {len(ids):,} check-ins of the rollout's devices", inc, inc_cpu,
                 f", {cache.rows_read:,} rows read  = x{full / inc:,.0f} faster than the whole fleet")
            # The experiment's devices: most check in, some enroll at its site, some leave.
            few = max(1, changed // 100)
            with db.write() as session:
                check_in(session, held[2 * few :], OLD)
                for device_id in held[:few]:
                    decommission(session, device_id)
                enroll(session, [f"dev-9{i:06d}" for i in range(few)], "s0")
            time.sleep(CHANGE_LAG_S)
            exp, exp_cpu = timed(lambda: tick(ctx, now + 3, cache))
            line(f"next pass, after {cache.rows_read:,} of the experiment's devices changed", exp, exp_cpu,
                 f", {cache.rows_read:,} rows read  = x{exp_full / exp:,.0f} faster than the experiment alone reading the fleet")
            # An operator pauses the rollout. The request decides over the whole fleet (as
            # before) and writes the rows of the devices the pause holds; the job's next pass
            # then looks only at the devices whose order the pause changed, where before it
            # compared every row (forced below by forgetting that its rows match).
            def pause_it() -> None:
                with db.write() as session:
                    rollouts.act(session, "ro-bulk", "pause", RolloutAction(reason="benchmark"), now + 4)

            act, act_cpu = timed(pause_it)
            line("an operator's pause (the request, reading the whole fleet)", act, act_cpu)
            after, after_cpu = timed(lambda: tick(ctx, now + 5, cache))
            cache.synced.pop("ro-bulk")
            rewrite, rewrite_cpu = timed(lambda: tick(ctx, now + 6, cache))
            line("the job's next pass, comparing every row of the rollout (before)", rewrite, rewrite_cpu)
            line("the job's next pass, looking at the devices the pause reordered", after, after_cpu,
                 f"  = x{rewrite / after:,.0f} faster")
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
