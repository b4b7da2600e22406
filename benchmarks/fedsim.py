"""Federated round simulator figures: wall time of ``edgeship simulate --federated`` rounds on
10,000 virtual devices, healthy and with 5% dropouts, 10% stragglers and 1% rejected updates,
against a baseline measured in the same run: a bare loop drawing the same random numbers per
device with no round rules (the share of the time the rules and bookkeeping cost).

Run: python benchmarks/fedsim.py [--devices 10000] [--rounds 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable

from edgeship.sim.federated import FedSimConfig, simulate_rounds


def _bare(devices: int, rounds: int) -> None:
    rng = random.Random(0)
    for _ in range(rounds):
        draws = [(rng.random(), rng.random(), rng.uniform(0.05, 0.95), rng.random()) for _ in range(devices)]
        draws.sort()


def _best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    print(f"{a.devices} virtual devices, {a.rounds} rounds, best of {a.repeat}; load average {os.getloadavg()[0]:.1f}")
    bare = _best(lambda: _bare(a.devices, a.rounds), a.repeat)
    print(f"{'baseline: bare random draws':<44} {bare:7.3f} s")
    cases = {
        "healthy fleet": FedSimConfig(devices=a.devices, rounds=a.rounds, min_participants=a.devices // 2),
        "5% dropouts, 10% stragglers, 1% rejected": FedSimConfig(devices=a.devices, rounds=a.rounds, min_participants=a.devices // 2,
                                                                  dropout_rate=0.05, straggler_rate=0.10, reject_rate=0.01),
    }
    for name, config in cases.items():
        wall = _best(lambda c=config: simulate_rounds(c), a.repeat)
        rounds = simulate_rounds(config)
        used = sum(r.outcome.used for r in rounds)
        print(f"{name:<44} {wall:7.3f} s  {a.devices * a.rounds / wall / 1e6:5.2f}M device-rounds/s  "
              f"{wall / bare:4.2f}x baseline  {used}/{a.rounds} rounds completed")


if __name__ == "__main__":
    main()
