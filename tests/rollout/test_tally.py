"""The incremental engine: a tally fed report by report decides exactly like ``decide`` on the whole fleet."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from edgeship.rollout import (
    Assignment,
    Decision,
    DeviceFacts,
    DeviceState,
    DeviceView,
    HealthMetrics,
    OnFail,
    Rollout,
    RolloutPolicy,
    RolloutState,
    RolloutStatus,
    Selector,
    Stage,
    Tally,
    decide,
    decide_tally,
    pause,
    reordered,
)
from edgeship.rollout.engine import Orders
from edgeship.release.manifest import Requirements

NEW, OLD = "new" * 4, "old" * 4
GiB = 1 << 30
IDS = [f"dev-{i}" for i in range(40)]

# Few distinct values, so ties, equal medians and exact budget edges come up often.
health = st.builds(
    HealthMetrics,
    st.sampled_from([0.0, 0.01, 0.02, 0.1, 0.3, 1 / 3]),
    st.sampled_from([50.0, 100.0, 125.0, 300.0, 1e-3]),
    st.none(),
    st.one_of(st.none(), st.sampled_from([0.5, 0.8, 0.81, 1.0])),
)
views = st.builds(
    DeviceView,
    st.sampled_from(IDS),
    st.fixed_dictionaries({"ring": st.sampled_from(["pilot", "main"]), "site": st.sampled_from(["a", "b"])}),
    st.builds(DeviceFacts, st.sampled_from([1 * GiB, 4 * GiB, 8 * GiB, None]), st.sampled_from(["arm64", "x86_64"])),
    st.sampled_from([None, OLD, NEW, "other"]),
    st.sampled_from(list(DeviceState)),
    st.sampled_from([None, OLD, NEW]),
    st.one_of(st.none(), health),
    st.sampled_from([None, 0.0, 50.0, 100.0, 150.0]),
)


@st.composite
def rollouts(draw: st.DrawFn) -> Rollout:
    percents = sorted(draw(st.lists(st.sampled_from([1.0, 10.0, 30.0, 50.0, 90.0, 100.0]), min_size=1, max_size=4, unique=True)))
    bake = draw(st.sampled_from([0.0, 30.0]))
    policy = RolloutPolicy(
        pilot=draw(st.sampled_from([None, Selector.parse("ring=pilot")])),
        pilot_bake=bake,
        stages=tuple(Stage(p, bake, draw(st.sampled_from([0.0, 0.1, 0.5]))) for p in percents),
        on_fail=draw(st.sampled_from(list(OnFail))),
        max_pending=draw(st.sampled_from([0.0, 0.25])),
    )
    policy = dataclasses.replace(policy, health=dataclasses.replace(policy.health, min_devices=draw(st.sampled_from([1, 3]))))
    status = draw(st.sampled_from(list(RolloutStatus)))
    state = RolloutState(
        status,
        draw(st.integers(0, len(policy.phases) - 1)),
        since=draw(st.sampled_from([0.0, 100.0])),
        bake_started=draw(st.sampled_from([None, 0.0])) if status is RolloutStatus.BAKING else None,
        rollback=status is RolloutStatus.ABORTED and draw(st.booleans()),
        ordered_since=draw(st.sampled_from([None, 0.0, 50.0])),
    )
    target = draw(st.sampled_from([Selector(), Selector.parse("site=a")]))
    requirements = Requirements(min_ram=draw(st.sampled_from([None, 2 * GiB])))
    return Rollout("ro-p", NEW, previous_release=OLD, target=target, requirements=requirements, policy=policy, state=state)


def same(incremental: Decision, full: Decision) -> None:
    for f in dataclasses.fields(Decision):
        if f.name != "assignments":
            assert getattr(incremental, f.name) == getattr(full, f.name), f.name
    assert dict(incremental.assignments) == dict(full.assignments)


@settings(max_examples=300, deadline=None)
@given(rollouts(), st.lists(views, max_size=40), st.lists(st.one_of(views, st.sampled_from(IDS)), max_size=60), st.data())
def test_tally_fed_changes_decides_like_a_full_recompute(
    rollout: Rollout, start: list[DeviceView], changes: list[DeviceView | str], data: st.DataObject
) -> None:
    fleet = {v.id: v for v in start}
    tally = Tally(rollout, fleet.values())
    now = 0.0
    for change in changes:
        # A changed report, a new device, or a device leaving the fleet (a bare ID).
        if isinstance(change, str):
            fleet.pop(change, None)
            tally.discard(change)
        else:
            fleet[change.id] = change
            tally.update(change)
        if data.draw(st.booleans()):
            now += data.draw(st.sampled_from([0.0, 10.0, 40.0]))
            incremental, full = decide_tally(rollout, tally, now), decide(rollout, list(fleet.values()), now)
            same(incremental, full)
            rollout = incremental.rollout  # the rollout moves on as it would on a server
    same(decide_tally(rollout, tally, now + 1), decide(rollout, list(fleet.values()), now + 1))


@settings(max_examples=100, deadline=None)
@given(rollouts(), st.lists(views, max_size=40))
def test_a_fleet_listed_with_repeats_counts_each_devices_last_report(rollout: Rollout, listed: list[DeviceView]) -> None:
    last = {v.id: v for v in listed}
    same(decide(rollout, listed, 5.0), decide(rollout, list(last.values()), 5.0))


def _row(a: Assignment | None) -> tuple[object, ...] | None:
    return None if a is None or a.release is None else (a.release, a.rollback, a.window, a.notice)


@settings(max_examples=200, deadline=None)
@given(rollouts(), rollouts(), st.lists(views, max_size=40))
def test_reordered_names_exactly_the_devices_whose_stored_row_differs_between_two_states(
    before: Rollout, other: Rollout, fleet: list[DeviceView]
) -> None:
    phase = min(other.state.phase, len(before.policy.phases) - 1)
    after = dataclasses.replace(before, state=dataclasses.replace(other.state, phase=phase))  # the same plan, another state
    tally = Tally(before, fleet)
    old = Orders(before, tally)
    new = Orders(after, tally)
    assert reordered(tally, before, after) == {d for d in tally if _row(old[d]) != _row(new[d])}


def test_a_pause_reorders_only_the_devices_it_holds() -> None:
    policy = RolloutPolicy(pilot=None, stages=(Stage(50.0, 0.0, 0.5), Stage(100.0, 0.0, 0.5)))
    rolling = Rollout("ro-p", NEW, previous_release=OLD, policy=policy, state=RolloutState(since=0.0))
    fleet = [DeviceView(i, {}, DeviceFacts(8 * GiB, "arm64"), NEW if n % 2 else OLD, DeviceState.COMMITTED, None, None, 0.0)
             for n, i in enumerate(IDS)]
    tally = Tally(rolling, fleet)
    paused = pause(rolling, 1.0)
    waiting_in_stage = {d.id for d in fleet if d.current == OLD and Orders(rolling, tally)[d.id].release == NEW}
    assert waiting_in_stage and reordered(tally, rolling, paused) == waiting_in_stage
