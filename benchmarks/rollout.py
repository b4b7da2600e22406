"""Rollout engine figures: decisions per second for 100,000 devices, and a full simulated rollout.

Run: python benchmarks/rollout.py [--devices 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import time
from collections.abc import Callable

from edgeship.rollout import (
    DeviceFacts,
    DeviceState,
    DeviceView,
    HealthMetrics,
    Rollout,
    RolloutPolicy,
    decide,
    place,
)
from edgeship.sim.config import Faults, SimConfig
from edgeship.sim.runner import simulate


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


def bench_simulation(n: int) -> None:
    faults = Faults.parse("crash-download=0.01,power-loss-switch=0.005,slow-link=0.1,offline=0.05")
    for label, bad in (("good release", 0.0), ("bad release (0.3)", 0.3)):
        t0 = time.perf_counter()
        result = simulate(SimConfig(devices=n, seed=1, release_bad_rate=bad, faults=faults))
        wall = time.perf_counter() - t0
        state = result.decision.rollout.state
        print(
            f"simulated rollout, {n:,} devices, {label}: {wall:.1f} s wall, "
            f"{result.duration / 3600:.1f} h simulated, {len(result.samples)} engine ticks, "
            f"ended {state.status.value} in {result.decision.rollout.policy.phases[state.phase].name}, "
            f"{len(result.fleet.ran):,} devices ran the release"
        )


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
    args = parser.parse_args()
    bench_decide(args.devices, args.repeat)
    bench_simulation(args.devices)


if __name__ == "__main__":
    main()
