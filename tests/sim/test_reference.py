"""The vectorised fleet against the event-driven model it replaced (tests/sim/oracle.py), on the
same devices: draws differ, so runs are compared over several seeds, not device by device."""

from __future__ import annotations

from statistics import mean

import numpy as np

from edgeship.rollout import RolloutPolicy
from edgeship.sim.config import Faults, SimConfig
from edgeship.sim.feed import TallyFeed
from edgeship.sim.fleet import Fleet, make_fleet
from edgeship.sim.runner import PREVIOUS, make_rollout, run
from edgeship.sim.virtual import VirtualFleet
from tests.sim.oracle import Outcome, run_reference

FAULTS = Faults.parse("crash-download=0.01,power-loss-switch=0.005,slow-link=0.1,offline=0.05,corrupt=0.01")


def run_vectorised(config: SimConfig, fleet: Fleet) -> Outcome:
    feed = TallyFeed(make_rollout(config), fleet, PREVIOUS)
    result = run(feed.rollout, VirtualFleet(fleet, config, feed), feed, config, None)
    state = result.decision.rollout.state
    curve = [(s.t, s.states.get("on_release", 0)) for s in result.samples]
    return Outcome(state.status.value, state.phase, result.duration, int(result.fleet.ran.sum()), curve)


def both(seeds: range, devices: int, **kw: object) -> list[tuple[Outcome, Outcome]]:
    """(event-driven, vectorised) per seed, each pair on one fleet."""
    runs = []
    for seed in seeds:
        config = SimConfig(devices=devices, seed=seed, **kw)  # type: ignore[arg-type]
        fleet = make_fleet(devices, np.random.default_rng(seed), config.pilot_share, config.faults.slow_link)
        runs.append((run_reference(config, fleet), run_vectorised(config, fleet)))
    return runs


def reached(o: Outcome, share: float) -> float:
    """Seconds until ``share`` of the devices that end on the release are on it."""
    last = o.on_release[-1][1]
    return next(t for t, n in o.on_release if n >= share * last)


def close(a: list[float], b: list[float], within: float) -> bool:
    return abs(mean(a) - mean(b)) <= within * mean(a)


def test_good_release_with_faults_takes_as_long_and_reaches_the_same_devices() -> None:
    runs = both(range(1, 17), 1500, faults=FAULTS, policy=RolloutPolicy.from_options(bake="20m"))
    assert all(ref.status == vec.status == "completed" for ref, vec in runs)
    # Every eligible device of the fleet gets through in both (3 corrupt downloads in a row: ~1e-6).
    assert [ref.ran for ref, _ in runs] == [vec.ran for _, vec in runs]
    # Stragglers (offline for hours) set the pace: means over the seeds agree.
    for share in (0.5, 0.9):
        assert close([reached(r, share) for r, _ in runs], [reached(v, share) for _, v in runs], 0.2), share
    assert close([r.duration for r, _ in runs], [v.duration for _, v in runs], 0.2)


def test_windowed_rollout_follows_the_same_nights() -> None:
    policy = RolloutPolicy.from_options(bake="20m", window="02:00-04:00", notice="1h")
    runs = both(range(1, 7), 1500, policy=policy)
    assert all(ref.status == vec.status == "completed" for ref, vec in runs)
    for share in (0.5, 0.9):
        ref, vec = [reached(r, share) for r, _ in runs], [reached(v, share) for _, v in runs]
        assert close(ref, vec, 0.05), share
        assert all(abs(a - b) < 6 * 3600 for a, b in zip(ref, vec))  # the same night, give or take a zone


def test_bad_release_stops_in_the_first_phases_in_both() -> None:
    runs = both(range(1, 9), 1500, release_bad_rate=0.3, faults=FAULTS, policy=RolloutPolicy.from_options(bake="20m"))
    for ref, vec in runs:
        assert ref.status == vec.status == "paused"
        assert ref.phase <= 1 and vec.phase <= 1
        assert max(ref.ran, vec.ran) < 50  # the pilot and 1 % of 1,500
