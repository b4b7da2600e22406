"""Engine decisions: pilot first, stages after bake, budgets, skips, pause and rollback."""

from __future__ import annotations

import dataclasses

import pytest

from edgeship.errors import RolloutError
from edgeship.release.manifest import Requirements
from edgeship.rollout import (
    AssignmentReason,
    Decision,
    DeviceFacts,
    DeviceState,
    DeviceView,
    HealthMetrics,
    MaintenanceWindow,
    OnFail,
    Rollout,
    RolloutPolicy,
    RolloutState,
    RolloutStatus,
    Selector,
    Stage,
    abort,
    decide,
    pause,
    place,
    promote,
    resume,
)

NEW, OLD = "new" * 4, "old" * 4
GiB = 1 << 30
BAKE = 600.0


def fleet(n: int = 1000, pilots: int = 5) -> list[DeviceView]:
    return [
        DeviceView(
            f"dev-{i}",
            {"ring": "pilot" if i < pilots else "main", "site": "berlin" if i % 2 else "paris"},
            DeviceFacts(ram=8 * GiB, arch="arm64"),
            current=OLD,
            state=DeviceState.COMMITTED,
            target=OLD,
        )
        for i in range(n)
    ]


def make(on_fail: OnFail = OnFail.PAUSE, **kw: object) -> Rollout:
    policy = RolloutPolicy(
        pilot_bake=BAKE, stages=tuple(Stage(p, BAKE, 0.02) for p in (1, 10, 50, 100)), on_fail=on_fail
    )
    return Rollout("ro-1", NEW, previous_release=OLD, policy=policy, **kw)  # type: ignore[arg-type]


def report(devices: list[DeviceView], decision: Decision, ok: bool = True, only: set[str] | None = None) -> list[DeviceView]:
    """Every device acts on its assignment at once: installs it (ok) or fails its trial."""
    out = []
    for d in devices:
        a = decision.assignments[d.id]
        if a.release is not None and a.release != d.current and (only is None or d.id in only):
            if a.rollback or ok:
                d = dataclasses.replace(d, current=a.release, target=a.release, state=DeviceState.COMMITTED)
            else:
                d = dataclasses.replace(d, target=a.release, state=DeviceState.ROLLED_BACK)
        out.append(d)
    return out


def assigned(decision: Decision) -> set[str]:
    return {k for k, a in decision.assignments.items() if a.reason is AssignmentReason.ASSIGNED}


def test_pilot_goes_first_and_must_all_succeed() -> None:
    devices, ro = fleet(), make()
    d = decide(ro, devices, 0.0)
    assert assigned(d) == {f"dev-{i}" for i in range(5)}
    assert d.assignments["dev-500"].reason is AssignmentReason.NOT_YET
    # Four of five pilots done, one still installing: no bake yet.
    devices = report(devices, d, only={f"dev-{i}" for i in range(4)})
    d = decide(d.rollout, devices, 100.0)
    assert d.rollout.state.status is RolloutStatus.ROLLING
    assert (d.stages[0].done, d.stages[0].in_progress) == (4, 1)
    devices = report(devices, d)
    d = decide(d.rollout, devices, 200.0)
    assert d.rollout.state.status is RolloutStatus.BAKING
    assert d.stages[0].bake_left == BAKE and d.next_check == 200.0 + BAKE


def test_stage_advances_only_after_bake() -> None:
    devices, ro = fleet(), make()
    d = decide(ro, devices, 0.0)
    devices = report(devices, d)
    d = decide(d.rollout, devices, 10.0)  # pilot installed → baking
    assert d.next_check == 10.0 + BAKE
    d = decide(d.rollout, devices, 10.0 + BAKE - 1)
    assert d.rollout.state.phase == 0 and d.stages[0].bake_left == 1.0
    d = decide(d.rollout, devices, 10.0 + BAKE)
    assert d.rollout.state.phase == 1 and d.rollout.state.status is RolloutStatus.ROLLING
    stage1 = assigned(d)
    assert 5 < len(stage1) < 5 + 30  # pilot + about 1 % of 995
    assert [e.message for e in d.events] == ["pilot passed"]
    # Walk the rest; each stage includes the previous one.
    t, seen = 10.0 + BAKE, stage1
    while d.rollout.state.status is not RolloutStatus.COMPLETED:
        devices = report(devices, d)
        t += 1
        d = decide(d.rollout, devices, t)
        if d.rollout.state.status is RolloutStatus.BAKING:
            t += BAKE
            d = decide(d.rollout, devices, t)
        assert seen <= assigned(d)
        seen = assigned(d)
    assert seen == {x.id for x in devices}
    assert all(s.status == "passed" and s.failed == 0 for s in d.stages)
    assert sum(s.targeted for s in d.stages) == 1000


def test_pilot_failure_pauses_by_default() -> None:
    devices, ro = fleet(), make()
    d = decide(ro, devices, 0.0)
    devices = report(devices, d, ok=False, only={"dev-0"})
    d = decide(d.rollout, devices, 50.0)
    state = d.rollout.state
    assert state.status is RolloutStatus.PAUSED and not state.rollback
    assert "1 of 5 devices failed in pilot" in state.reason
    assert d.events[0].status is RolloutStatus.PAUSED
    # Pilots that had not started are held; the ones that finished keep the release.
    assert d.assignments["dev-0"].release == NEW
    assert d.assignments["dev-1"].reason is AssignmentReason.HELD


def test_budget_exceeded_rolls_back_when_policy_says_so() -> None:
    devices, ro = fleet(), make(on_fail=OnFail.ROLLBACK)
    d = decide(ro, devices, 0.0)
    devices = report(devices, d)
    d = decide(decide(d.rollout, devices, 1.0).rollout, devices, 1.0 + BAKE)
    fresh = sorted(assigned(d) - {x.id for x in devices if x.current == NEW})
    assert len(fresh) >= 4
    devices = report(devices, d, ok=False, only=set(fresh[:3]))  # three of ~15: over 2 %
    devices = report(devices, d, only=set(fresh[3:]))
    d = decide(d.rollout, devices, 2000.0)
    assert d.rollout.state.status is RolloutStatus.ABORTED and d.rollout.state.rollback
    orders = {k: a for k, a in d.assignments.items() if a.reason is AssignmentReason.ROLLBACK}
    on_new = {x.id for x in devices if x.current == NEW}
    assert set(orders) == on_new and d.rollback_remaining == len(on_new)
    assert all(a.release == OLD and a.rollback and a.window is None for a in orders.values())
    devices = report(devices, d)
    d = decide(d.rollout, devices, 2100.0)
    assert d.rollback_remaining == 0 and all(x.current == OLD for x in devices)


def _heard(devices: list[DeviceView], at: float, ids: set[str]) -> list[DeviceView]:
    return [dataclasses.replace(x, seen=at) if x.id in ids else x for x in devices]


@pytest.mark.parametrize("pilot_installed", [True, False])
def test_a_pilot_silent_at_the_abort_counts_until_it_checks_in_again(pilot_installed: bool) -> None:
    # An agent runs a job without a window from order to commit in one round and reports
    # it afterwards, so at the abort a pilot told to install may be committing the release
    # with nothing reported yet. It is not "nothing left to roll back" until it checks in.
    pilots = {"dev-0", "dev-1"}
    devices, ro = [dataclasses.replace(x, seen=0.0) for x in fleet(10, pilots=2)], make(on_fail=OnFail.ROLLBACK)
    ordered = decide(ro, devices, 1.0)
    assert assigned(ordered) == pilots
    devices = _heard(devices, 1.5, pilots)  # both check in and get the order
    devices = report(devices, ordered, ok=False, only={"dev-1"})  # dev-1's failure arrives first
    d = decide(ordered.rollout, devices, 2.0)
    assert d.rollout.state.status is RolloutStatus.ABORTED and d.rollout.state.rollback
    assert d.assignments["dev-0"].reason is AssignmentReason.HELD  # nothing to order back yet
    assert d.rollback_remaining == 1, "dev-0 was told to install and has not been heard from since the abort"
    assert d.summary()["rollback_remaining"] == 1

    # dev-0's round ends: it reports what it did (or nothing) and checks in again.
    if pilot_installed:
        devices = report(devices, ordered, only={"dev-0"})
    devices = _heard(devices, 2.5, {"dev-0"})
    d = decide(d.rollout, devices, 3.0)
    if pilot_installed:
        assert d.assignments["dev-0"].reason is AssignmentReason.ROLLBACK and d.rollback_remaining == 1
        devices = _heard(report(devices, d), 3.5, {"dev-0"})
        d = decide(d.rollout, devices, 4.0)
    assert d.rollback_remaining == 0 and {x.current for x in devices} == {OLD}


def test_a_pilot_offline_since_before_the_orders_does_not_hold_the_rollback_open() -> None:
    # Only a device that checked in after the orders went out can be installing unreported;
    # one offline since before them never got an order, and in a real fleet some always are.
    devices = [dataclasses.replace(x, seen=0.0) for x in fleet(10, pilots=3)]
    ro = make(on_fail=OnFail.ROLLBACK, state=RolloutState(since=1.0, ordered_since=1.0))
    ordered = decide(ro, devices, 1.0)
    assert assigned(ordered) == {"dev-0", "dev-1", "dev-2"}
    devices = _heard(devices, 1.5, {"dev-1", "dev-2"})  # dev-0 stays offline
    devices = report(devices, ordered, ok=False, only={"dev-1"})
    d = decide(ordered.rollout, devices, 2.0)
    assert d.rollout.state.status is RolloutStatus.ABORTED and d.rollout.state.ordered_since == 1.0
    assert d.rollback_remaining == 1, "dev-2 may be committing unreported; dev-0 never got the order"
    d = decide(d.rollout, _heard(devices, 2.5, {"dev-2"}), 3.0)
    assert d.rollback_remaining == 0


def test_requirements_skip_with_reason() -> None:
    devices = fleet(20, pilots=0)
    devices[3] = dataclasses.replace(devices[3], facts=DeviceFacts(ram=2 * GiB, arch="x86_64"))
    reqs = Requirements(min_ram=4 * GiB, arch=("arm64",))
    d = decide(make(requirements=reqs), devices, 0.0)
    a = d.assignments["dev-3"]
    assert a.reason is AssignmentReason.SKIPPED and a.release is None
    assert f"needs {4 * GiB} bytes of RAM" in a.detail and "needs arch arm64" in a.detail
    assert d.skipped == 1


def test_target_selector_and_not_targeted() -> None:
    devices = fleet(50)
    d = decide(make(target=Selector.parse("site=berlin")), devices, 0.0)
    assert d.assignments["dev-2"].reason is AssignmentReason.NOT_TARGETED
    assert d.not_targeted == 25
    assert assigned(d) == {"dev-1", "dev-3"}  # the pilots in Berlin


def test_empty_stages_pass_at_once() -> None:
    devices = fleet(10, pilots=0)
    d = decide(make(), devices, 0.0)
    # No pilot and 1 % of ten devices is likely nobody: the engine moves on by itself.
    first = d.rollout.state.phase
    assert first >= 1 and assigned(d)
    assert all(s.status == "passed" for s in d.stages[:first])


def test_health_regression_breaches_the_budget() -> None:
    healthy, sick = HealthMetrics(0.01, 100.0), HealthMetrics(0.20, 100.0)
    devices = [dataclasses.replace(x, health=healthy) for x in fleet(200, pilots=0)]
    ro = make()
    ro = dataclasses.replace(ro, policy=dataclasses.replace(ro.policy, pilot=None))
    d = decide(ro, devices, 0.0)
    devices = [
        dataclasses.replace(x, health=sick) if x.current == NEW else x for x in report(devices, d)
    ]
    # Too few reports on the new release: no verdict yet.
    d = decide(d.rollout, devices, 1.0)
    assert not d.health.enough_data and d.rollout.state.status is RolloutStatus.BAKING
    d = promote(d.rollout, 2.0)
    d = decide(d, devices, 2.0)
    devices = [dataclasses.replace(x, health=sick) if x.current == NEW else x for x in report(devices, d)]
    d = decide(d.rollout, devices, 3.0)
    assert d.rollout.state.status is RolloutStatus.PAUSED
    assert "error rate 20.0% vs 1.0%" in d.rollout.state.reason


def test_window_and_notice_travel_with_the_assignment() -> None:
    ro = make()
    w = MaintenanceWindow.parse("02:00-04:00")
    ro = dataclasses.replace(ro, policy=dataclasses.replace(ro.policy, window=w, notice=3600.0))
    a = decide(ro, fleet(10), 0.0).assignments["dev-0"]
    assert (a.window, a.notice) == (w, 3600.0)


def test_operator_actions() -> None:
    devices, ro = fleet(), make()
    paused = pause(ro, 5.0)
    assert decide(paused, devices, 6.0).assignments["dev-0"].reason is AssignmentReason.HELD
    resumed = resume(paused, 7.0)
    assert resumed.state.status is RolloutStatus.ROLLING
    with pytest.raises(RolloutError, match="not paused"):
        resume(resumed, 8.0)
    assert promote(resumed, 9.0).state.phase == 1
    stopped = abort(resumed, 10.0, rollback=False)
    with pytest.raises(RolloutError, match="already aborted"):
        abort(stopped, 11.0)
    no_prev = Rollout("ro-2", NEW)
    with pytest.raises(RolloutError, match="no previous release"):
        abort(no_prev, 1.0)


def test_rollback_policy_needs_a_previous_release() -> None:
    with pytest.raises(RolloutError, match="names no previous release"):
        Rollout("ro-3", NEW, policy=RolloutPolicy(on_fail=OnFail.ROLLBACK))


def test_placement_cache_gives_the_same_decision() -> None:
    devices, ro = fleet(300), make()
    assert decide(ro, devices, 0.0, place(ro, devices)).assignments == decide(ro, devices, 0.0).assignments


@pytest.mark.parametrize("stages", [(), (10.0, 5.0), (0.0,), (50.0, 120.0)])
def test_bad_plans_are_refused(stages: tuple[float, ...]) -> None:
    with pytest.raises(RolloutError):
        RolloutPolicy(stages=tuple(Stage(p) for p in stages))
