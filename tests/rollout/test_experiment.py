"""A/B experiments: stable arms, significance tests, and honest verdicts."""

from __future__ import annotations

import random

import pytest

from edgeship.errors import RolloutError
from edgeship.rollout import DeviceState, DeviceView, HealthMetrics, Selector
from edgeship.rollout.experiment import (
    TOO_EARLY,
    ArmData,
    Arms,
    Experiment,
    collect,
    evaluate,
    mann_whitney,
)

EXP = Experiment("exp-1", "rel-a", "rel-b", started=0.0, duration=86400.0)
DAY = 86400.0


def test_arms_are_stable_and_follow_the_split() -> None:
    ids = [f"dev-{i}" for i in range(10_000)]
    arms = [EXP.arm(d) for d in ids]
    assert arms == [EXP.arm(d) for d in ids]
    assert 0.48 < arms.count("A") / len(ids) < 0.52
    narrow = Experiment("exp-1", "rel-a", "rel-b", split=0.2)
    share = sum(narrow.arm(d) == "A" for d in ids) / len(ids)
    assert 0.18 < share < 0.22
    # Growing A's share only moves devices from B to A, never back.
    assert all(EXP.arm(d) == "A" for d in ids if narrow.arm(d) == "A")


def test_mann_whitney_matches_the_textbook() -> None:
    # U = 17 vs 3, tie-free: z = (7 - 0.5) / sqrt(50/3) -> p = 0.111 (scipy's asymptotic test agrees).
    p, a_higher = mann_whitney([19, 22, 16, 29, 24], [20, 11, 17, 12])
    assert p == pytest.approx(0.1111, abs=5e-4) and a_higher


def test_clear_cut_win_for_a() -> None:
    rng = random.Random(1)
    a = ArmData(490, 10, [rng.gauss(100, 10) for _ in range(300)], [rng.choice([4, 5]) for _ in range(200)])
    b = ArmData(440, 60, [rng.gauss(130, 10) for _ in range(300)], [rng.choice([2, 3, 4]) for _ in range(200)])
    v = evaluate(EXP, a, b, now=DAY)
    assert v.verdict == "A better"
    assert [c.better for c in v.comparisons] == ["A", "A", "A"]
    assert "install success (p=" in v.reason
    assert v.comparisons[0].a == pytest.approx(0.98) and v.comparisons[1].b > 120


def test_b_better_on_latency_alone() -> None:
    rng = random.Random(2)
    a = ArmData(100, 0, [rng.gauss(200, 20) for _ in range(100)])
    b = ArmData(100, 0, [rng.gauss(150, 20) for _ in range(100)])
    v = evaluate(EXP, a, b, now=DAY)
    assert v.verdict == "B better" and v.comparisons[0].p_value == 1.0


def test_too_early_with_little_data() -> None:
    v = evaluate(EXP, ArmData(9, 1, [100.0] * 5), ArmData(5, 5, [300.0] * 5), now=3600.0)
    assert v.verdict == TOO_EARLY
    assert "fewer than 20 samples" in v.reason and "23.0 h of the experiment left" in v.reason
    assert all(c.p_value is None for c in v.comparisons)


def test_too_early_when_the_arms_look_alike() -> None:
    rng = random.Random(3)
    same = [ArmData(200, 4, [rng.gauss(100, 10) for _ in range(200)]) for _ in range(2)]
    v = evaluate(EXP, *same, now=DAY)
    assert v.verdict == TOO_EARLY and "no significant difference" in v.reason


def test_too_early_when_metrics_disagree() -> None:
    rng = random.Random(4)
    a = ArmData(495, 5, [rng.gauss(150, 10) for _ in range(200)])
    b = ArmData(430, 70, [rng.gauss(100, 10) for _ in range(200)])
    v = evaluate(EXP, a, b, now=DAY)
    assert v.verdict == TOO_EARLY
    assert "install success favours A" in v.reason and "latency favours B" in v.reason


def test_collect_from_device_reports() -> None:
    devices = []
    for i in range(200):
        d = DeviceView(f"dev-{i}")
        release = EXP.release_of(d.id)
        if i % 10 == 0:
            d = DeviceView(d.id, state=DeviceState.ROLLED_BACK, target=release, current="old")
        else:
            d = DeviceView(d.id, current=release, state=DeviceState.COMMITTED, health=HealthMetrics(0.01, 100.0 + i))
        devices.append(d)
    a, b = collect(EXP, devices, ratings={"dev-1": [5.0, 4.0]})
    assert a.installs_ok + b.installs_ok == 180 and a.installs_failed + b.installs_failed == 20
    assert len(a.latencies_ms) + len(b.latencies_ms) == 180
    assert list(a.ratings if EXP.arm("dev-1") == "A" else b.ratings) == [5.0, 4.0]


def test_bad_experiments_are_refused() -> None:
    with pytest.raises(RolloutError, match="split"):
        Experiment("x", "a", "b", split=1.0)
    with pytest.raises(RolloutError, match="two different"):
        Experiment("x", "a", "a")


def test_arms_fed_changes_match_a_full_assignment() -> None:
    targeted = Experiment("exp-1", "rel-a", "rel-b", target=Selector.parse("site=a"))
    rng = random.Random(5)
    fleet = {f"dev-{i}": DeviceView(f"dev-{i}", {"site": rng.choice("ab")}) for i in range(200)}
    arms = Arms(targeted, fleet.values())
    for _ in range(300):
        device_id = f"dev-{rng.randrange(260)}"  # a changed report, a new device or one leaving
        if rng.random() < 0.2:
            fleet.pop(device_id, None)
            arms.discard(device_id)
        else:
            fleet[device_id] = DeviceView(device_id, {"site": rng.choice("ab")})
            arms.update(fleet[device_id])
        assert arms.releases == targeted.assign(fleet.values())
    assert set(arms.releases.values()) == {"rel-a", "rel-b"}
