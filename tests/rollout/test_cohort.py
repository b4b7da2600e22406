"""Cohorts are deterministic, uniform enough, and monotonic in the stage percentage and the fleet."""

from hypothesis import given
from hypothesis import strategies as st

from edgeship.rollout import (
    DeviceView,
    Rollout,
    RolloutPolicy,
    Stage,
    cohort_value,
    place,
)
from edgeship.rollout.cohort import in_share

ids = st.text(min_size=1, max_size=40)


@given(ids, ids)
def test_value_is_deterministic_and_in_unit_interval(rollout_id: str, device_id: str) -> None:
    v = cohort_value(rollout_id, device_id)
    assert 0.0 <= v < 1.0
    assert v == cohort_value(rollout_id, device_id)


@given(ids, ids, st.floats(0, 100), st.floats(0, 100))
def test_stage_membership_is_monotonic(rollout_id: str, device_id: str, p: float, q: float) -> None:
    lo, hi = sorted((p, q))
    if in_share(rollout_id, device_id, lo):
        assert in_share(rollout_id, device_id, hi)


def test_separator_keeps_id_pairs_apart() -> None:
    assert cohort_value("ab", "c") != cohort_value("a", "bc")


def test_values_spread_evenly() -> None:
    values = [cohort_value("r1", f"dev-{i}") for i in range(20_000)]
    for k in range(10):
        share = sum(k / 10 <= v < (k + 1) / 10 for v in values) / len(values)
        assert 0.09 < share < 0.11


@given(
    st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=60, unique=True),
    st.lists(st.text(min_size=1, max_size=12), max_size=60, unique=True),
)
def test_adding_devices_never_moves_existing_ones(fleet: list[str], added: list[str]) -> None:
    rollout = Rollout("r-prop", "rel", policy=RolloutPolicy(pilot=None, stages=(Stage(5), Stage(30), Stage(100))))
    before = place(rollout, [DeviceView(d) for d in fleet])
    after = place(rollout, [DeviceView(d) for d in [*fleet, *added]])
    assert {d: after[d] for d in fleet} == before
