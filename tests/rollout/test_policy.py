"""Operator flags become policies; selectors match tags and IDs; health margins flag regressions."""

import pytest

from edgeship.errors import UsageError
from edgeship.rollout import OnFail, RolloutPolicy, Selector
from edgeship.rollout.health import (
    CohortHealth,
    HealthMargins,
    HealthMetrics,
    HealthPool,
    compare,
    matched,
)


def test_policy_from_flags() -> None:
    p = RolloutPolicy.from_options(
        stages="5,25,100", bake="1h", max_failure="1%", window="02:00-04:00", notice="30m", on_fail="rollback"
    )
    assert [(ph.name, ph.bake, ph.max_failure) for ph in p.phases] == [
        ("pilot", 3600.0, 0.0),
        ("5%", 3600.0, 0.01),
        ("25%", 3600.0, 0.01),
        ("100%", 3600.0, 0.01),
    ]
    assert p.on_fail is OnFail.ROLLBACK and str(p.window) == "02:00-04:00" and p.notice == 1800.0
    assert RolloutPolicy.from_options(pilot=None).phases[0].name == "1%"


@pytest.mark.parametrize(
    "flags", [{"stages": "1,ten"}, {"max_failure": "150%"}, {"on_fail": "explode"}, {"bake": "soon"}]
)
def test_bad_flags_are_usage_errors(flags: dict[str, str]) -> None:
    with pytest.raises(UsageError):
        RolloutPolicy.from_options(**flags)


def test_selector_any_of_within_a_key_all_of_across_keys() -> None:
    s = Selector.parse("site=berlin,site=paris,hw=pi5")
    assert s.matches("a", {"site": "paris", "hw": "pi5"})
    assert not s.matches("a", {"site": "rome", "hw": "pi5"})
    assert not s.matches("a", {"site": "berlin"})
    assert Selector.parse("id=dev-7").matches("dev-7", {})
    assert Selector.parse("*").is_fleet and Selector.parse(None).matches("x", {})
    assert str(s) == "hw=pi5,site=berlin,site=paris"
    with pytest.raises(UsageError, match="key=value"):
        Selector.parse("site")


def test_health_compare_margins() -> None:
    base = CohortHealth.of([HealthMetrics(0.01, 100.0, output_stat=0.8)] * 20)
    same = CohortHealth.of([HealthMetrics(0.02, 120.0, output_stat=0.75)] * 20)
    slow = CohortHealth.of([HealthMetrics(0.01, 200.0, output_stat=0.4)] * 20)
    m = HealthMargins()
    assert not compare(same, base, m).regressed
    verdict = compare(slow, base, m)
    assert verdict.regressed and len(verdict.regressions) == 2
    assert "latency p95 200 ms vs 100 ms" in verdict.regressions[0] and "drift" in verdict.regressions[1]
    few = CohortHealth.of([HealthMetrics(0.5, 900.0)] * 3)
    assert not compare(few, base, m).regressed and not compare(few, base, m).enough_data


def test_health_is_compared_like_for_like_hardware() -> None:
    fast, slow = HealthMetrics(0.01, 100.0), HealthMetrics(0.01, 900.0)
    baseline = {"orin": [fast] * 50, "pi4": [slow] * 50}
    # A pilot of mostly slow boards is not a latency regression...
    pilot = {"orin": [fast] * 2, "pi4": [slow] * 18}
    assert not compare(*matched(pools(pilot), pools(baseline)), HealthMargins()).regressed
    # ...but slow boards getting slower is, and a class the baseline lacks is left out.
    worse = {"orin": [fast] * 2, "pi4": [HealthMetrics(0.01, 1500.0)] * 18, "new-board": [slow] * 30}
    cand, base = matched(pools(worse), pools(baseline))
    assert (cand.devices, base.devices) == (20, 100)
    assert compare(cand, base, HealthMargins()).regressed


def pools(groups: dict[str, list[HealthMetrics]]) -> dict[str, HealthPool]:
    return {k: HealthPool.of(v) for k, v in groups.items()}
