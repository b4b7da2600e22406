"""The array-based virtual fleet: the engine's tally it feeds in bulk is the one the engine builds
from every device's report, its fault draws follow the configured rates, and breaches stop the
rollout exactly where the engine's budget says."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeship.rollout import Decision, DeviceState, MaintenanceWindow, RolloutPolicy, RolloutStatus, Tally, next_switch_time, place
from edgeship.rollout.engine import Assignment, stage_of
from edgeship.rollout.health import HealthPool
from edgeship.sim.config import Faults, SimConfig
from edgeship.sim.feed import STATES, TallyFeed, _stages
from edgeship.sim.fleet import HARDWARE, ZONES, make_fleet
from edgeship.sim.runner import PREVIOUS, SimResult, make_rollout, run
from edgeship.sim.virtual import VirtualFleet
from edgeship.sim.windows import DAY, SwitchTimes

FAULTS = Faults.parse("crash-download=0.02,power-loss-switch=0.01,slow-link=0.1,offline=0.05,corrupt=0.2")


def build(config: SimConfig) -> tuple[VirtualFleet, TallyFeed]:
    """The pieces ``simulate`` puts together, kept by the test."""
    fleet = make_fleet(config.devices, np.random.default_rng(config.seed), config.pilot_share, config.faults.slow_link)
    feed = TallyFeed(make_rollout(config), fleet, PREVIOUS)
    return VirtualFleet(fleet, config, feed), feed


def pooled(pools: Mapping[object, HealthPool]) -> dict[object, object]:
    return {k: p.cohort() for k, p in pools.items() if p.devices}


def check_against_engine(fleet: VirtualFleet, feed: TallyFeed, decision: Decision) -> None:
    """The fed tally equals a tally the engine builds from every device's own report."""
    views = fleet.views()
    rollout = decision.rollout
    engine = Tally(rollout, views, place(rollout, views))
    fed = feed.tally
    assert fed.counts == engine.counts
    assert (fed.skipped, fed.not_targeted) == (engine.skipped, engine.not_targeted)
    assert pooled(fed.candidate) == pooled(engine.candidate)
    assert pooled(fed.baseline) == pooled(engine.baseline)
    assert fed.rollback_remaining(rollout.state) == engine.rollback_remaining(rollout.state)


@pytest.mark.parametrize(
    ("bad", "caught", "plan", "ends"),
    [
        (0.05, 0.8, {"on_fail": "rollback", "pilot": None}, "devices failed in 10%"),  # rolled back from a stage
        (0.5, 0.0, {"pilot": None}, "health regression"),  # trials pass, the release runs worse
        (0.0, 0.8, {"window": "02:00-04:00", "notice": "30m"}, ""),  # a good release through every stage
    ],
)
def test_fed_tally_is_the_engines_own_tally_at_every_tick(bad: float, caught: float, plan: dict[str, object], ends: str) -> None:
    config = SimConfig(devices=800, seed=4, release_bad_rate=bad, bad_trial_failure=caught, faults=FAULTS,
                       policy=RolloutPolicy.from_options(bake="20m", **plan))  # type: ignore[arg-type]
    fleet, feed = build(config)
    seen: list[Mapping[str, int]] = []

    def check(t: float, decision: Decision, counts: Mapping[str, int]) -> None:
        if not seen or counts != seen[-1]:  # a tick after which no device reported needs no second look
            check_against_engine(fleet, feed, decision)
            seen.append(counts)

    result = run(feed.rollout, fleet, feed, config, check)
    assert len(seen) > 5
    assert ends in result.decision.rollout.state.reason
    assert result.decision.rollout.state.status is not RolloutStatus.ROLLING


@pytest.mark.parametrize("pilot", ["ring=pilot", "id=sim-000004,id=sim-000100", None])
def test_placement_is_the_engines(pilot: str | None) -> None:
    config = SimConfig(devices=3000, seed=2, policy=RolloutPolicy.from_options(pilot=pilot, stages="5,30,100"))
    fleet, feed = build(config)
    expected = place(feed.rollout, fleet.views())
    got = [feed.place_of(i) for i in range(config.devices)]
    assert got == [expected[v.id] for v in fleet.views()]
    assert any(isinstance(p, Assignment) for p in got)  # the 1 GiB boards are skipped
    assert {p for p in got if isinstance(p, int)} == set(range(len(config.policy.phases)))


def test_drawn_failures_follow_the_configured_rates() -> None:
    # One stage, a budget that never breaches: every eligible device tries the release once.
    n, bad_rate, corrupt = 100_000, 0.2, 0.5
    config = SimConfig(devices=n, seed=8, release_bad_rate=bad_rate, bad_trial_failure=1.0,
                       faults=Faults(corrupt=corrupt, offline=0.1),
                       policy=RolloutPolicy.from_options(pilot=None, stages="100", bake="0s", max_failure="0.99"))
    fleet, feed = build(config)
    result = run(feed.rollout, fleet, feed, config, None)
    assert result.decision.rollout.state.status is RolloutStatus.COMPLETED
    states = result.fleet.state_counts()
    started, ran = int(fleet.started.sum()), int(fleet.ran.sum())
    assert started == n - result.decision.skipped  # every eligible device took its order
    # Three corrupt downloads in a row and the device gives up.
    gave_up = corrupt**3
    assert abs(states["failed"] / started - gave_up) < 4 * np.sqrt(gave_up * (1 - gave_up) / started)
    # A trial fails on a board with the release's bad rate times the board's fragility.
    assert ran == started - states["failed"]
    assert states["committed"] == ran - states["rolled_back"]
    rolled_back = fleet.state == STATES.index(DeviceState.ROLLED_BACK)
    for k, hw in enumerate(HARDWARE):
        on_board = fleet.ran & (fleet.devices.hardware == k)
        if hw.ram < config.min_ram:
            assert not on_board.any()
            continue
        p, trials = bad_rate * hw.fragility, int(on_board.sum())
        assert abs(np.count_nonzero(rolled_back & on_board) / trials - p) < 4 * np.sqrt(p * (1 - p) / trials), hw.name


def breach_sample(result: SimResult) -> int:
    """The first sample at which the failures counted so far exceed the engine's budget."""
    phases = result.config.policy.phases
    targeted = [s.targeted for s in result.decision.stages]
    for k, sample in enumerate(result.samples):
        reached = [p.name for p in phases].index(sample.phase)
        members = sum(targeted[: reached + 1])
        failed = sum(f for _, f, _ in sample.stages[: reached + 1])
        if failed > phases[reached].max_failure * members:
            return k
    raise AssertionError("no sample over budget")


@pytest.mark.parametrize("on_fail", ["pause", "rollback"])
def test_a_release_failing_above_the_budget_stops_at_the_first_tick_over_it(on_fail: str) -> None:
    config = SimConfig(devices=20_000, seed=3, release_bad_rate=0.06, faults=FAULTS,
                       policy=RolloutPolicy.from_options(bake="20m", on_fail=on_fail))
    fleet, feed = build(config)
    result = run(feed.rollout, fleet, feed, config, None)
    k = breach_sample(result)
    statuses = [s.status for s in result.samples]
    stopped = "paused" if on_fail == "pause" else "aborted"
    assert stopped not in statuses[:k] and statuses[k] == stopped
    assert result.decision.rollout.state.reason.startswith(f"{sum(f for _, f, _ in result.samples[k].stages)} of ")
    if on_fail == "rollback":
        assert result.decision.rollback_remaining == 0 and not fleet.on_release.any()
        assert result.fleet.rollback_orders > 0


def test_same_seed_same_arrays_other_seed_other_run() -> None:
    def final(seed: int) -> tuple[bytes, bytes, float]:
        config = SimConfig(devices=5000, seed=seed, release_bad_rate=0.02, faults=FAULTS)
        fleet, feed = build(config)
        result = run(feed.rollout, fleet, feed, config, None)
        return fleet.state.tobytes(), fleet.switched_at.tobytes(), result.duration

    assert final(5) == final(5)
    assert final(5) != final(6)


@pytest.mark.parametrize("text", ["02:00-04:00", "23:30-01:00", "02:15-02:45", "01:30-03:30"])
def test_switch_times_in_bulk_are_next_switch_time(text: str) -> None:
    # Around the spring and autumn DST changes of Europe, the US and Australia; some times
    # fall outside the listed span and take the scalar path.
    window, zones = MaintenanceWindow.parse(text), [z[0] for z in ZONES]
    begin = datetime(2025, 3, 25, tzinfo=UTC).timestamp()
    bulk = SwitchTimes(window, 1800.0, zones, begin, begin + 40 * DAY)
    rng = np.random.default_rng(1)
    notified = begin + rng.uniform(-3 * DAY, 45 * DAY, 20_000)
    notified[:200] = begin + 4 * DAY + np.arange(200) * 450.0  # every quarter hour over two days
    zone = rng.integers(0, len(zones), len(notified))
    got = bulk(notified, zone)
    want = [next_switch_time(t, window, zones[z], 1800.0) for t, z in zip(notified.tolist(), zone.tolist())]
    assert got.tolist() == want
    assert SwitchTimes(None, 60.0, zones, begin, begin + DAY)(notified, zone).tolist() == (notified + 60.0).tolist()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 1.0, exclude_max=True), max_size=300), st.sampled_from(["100", "1,10,50,100", "5,20", "0.5,99"]))
def test_stages_in_bulk_are_stage_of(values: list[float], stages: str) -> None:
    phases = RolloutPolicy.from_options(stages=stages).phases
    assert _stages(phases, np.array(values, dtype=float)).tolist() == [stage_of(phases, v) for v in values]
