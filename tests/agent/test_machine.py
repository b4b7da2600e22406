"""Pure logic: transitions, crash recovery, the downgrade rule, backoff and rate pacing."""

from __future__ import annotations

import pytest

from edgeship.agent.backoff import Backoff, RateBudget, RateFloor
from edgeship.agent.machine import Phase, State, StepOutcome, check_downgrade, next_state, recover
from edgeship.errors import TrustError

OK, FAIL, CORRUPT = StepOutcome(), StepOutcome(ok=False, reason="boom"), StepOutcome(ok=False, retry=True, reason="bad hash")


def nxt(step: State, outcome: StepOutcome, verify_round: int = 0) -> State:
    return next_state(step, outcome, verify_round=verify_round, verify_attempts=3)


def test_happy_path_walks_every_state_in_order() -> None:
    path, s = [], State.ASSIGNED
    while not s.terminal:
        path.append(s)
        s = nxt(s, OK)
    assert [*path, s] == [State.ASSIGNED, State.WAITING_WINDOW, State.DOWNLOADING, State.VERIFYING, State.STAGED,
                          State.SWITCHING, State.TRIAL, State.COMMITTED]


def test_failures_before_the_switch_fail_after_it_roll_back() -> None:
    for s in (State.ASSIGNED, State.WAITING_WINDOW, State.DOWNLOADING, State.VERIFYING, State.STAGED):
        assert nxt(s, FAIL) is State.FAILED
    assert nxt(State.SWITCHING, FAIL) is State.ROLLED_BACK
    assert nxt(State.TRIAL, FAIL) is State.ROLLED_BACK


def test_corrupt_download_is_fetched_again_a_bounded_number_of_times() -> None:
    assert nxt(State.VERIFYING, CORRUPT, verify_round=0) is State.DOWNLOADING
    assert nxt(State.VERIFYING, CORRUPT, verify_round=1) is State.DOWNLOADING
    assert nxt(State.VERIFYING, CORRUPT, verify_round=2) is State.FAILED


def rec(step: State, phase: Phase, outcome: StepOutcome | None = None, trial_round: int = 0):  # noqa: ANN201
    return recover(step, phase, outcome, trial_round=trial_round, trial_attempts=2, verify_round=0, verify_attempts=3)


@pytest.mark.parametrize("step", [s for s in State if not s.terminal and s is not State.IDLE and s is not State.TRIAL])
def test_a_step_in_flight_is_run_again(step: State) -> None:
    r = rec(step, Phase.BEGIN)
    assert r is not None and r.state is step


def test_a_finished_step_leads_to_the_next() -> None:
    r = rec(State.SWITCHING, Phase.END, OK)
    assert r is not None and r.state is State.TRIAL
    r = rec(State.TRIAL, Phase.END, StepOutcome(ok=False, reason="health command exited 3"))
    assert r is not None and (r.state, r.reason) == (State.ROLLED_BACK, "health command exited 3")


def test_an_interrupted_trial_is_retried_then_rolled_back() -> None:
    r = rec(State.TRIAL, Phase.BEGIN, trial_round=1)
    assert r is not None and r.state is State.TRIAL
    r = rec(State.TRIAL, Phase.BEGIN, trial_round=2)
    assert r is not None and r.state is State.ROLLED_BACK and "interrupted 2 times" in (r.reason or "")


def test_terminal_steps_finish_and_keep_their_reason() -> None:
    assert rec(State.COMMITTED, Phase.END, OK) is None
    assert rec(State.IDLE, Phase.BEGIN) is None
    r = rec(State.ROLLED_BACK, Phase.BEGIN, StepOutcome(ok=False, reason="model check failed"))
    assert r is not None and (r.state, r.reason) == (State.ROLLED_BACK, "model check failed")


def test_downgrade_rule() -> None:
    running = ("llm", "2.0.0")
    check_downgrade(running, ("llm", "2.1.0"), signed_rollback=[], rollback_ordered=False)  # upgrade
    check_downgrade(None, ("llm", "0.1.0"), signed_rollback=[], rollback_ordered=False)  # first install
    check_downgrade(running, ("other", "0.1.0"), signed_rollback=[], rollback_ordered=False)  # another product
    check_downgrade(running, ("llm", "1.0.0"), signed_rollback=["1.0.0"], rollback_ordered=True)  # signed + ordered
    check_downgrade(running, ("llm", "1.0.0"), signed_rollback=["1.9.0", "1.0.0"], rollback_ordered=True)  # past a bad 1.9.0
    with pytest.raises(TrustError, match="needs a rollback order"):
        check_downgrade(running, ("llm", "1.0.0"), signed_rollback=["1.0.0"], rollback_ordered=False)
    with pytest.raises(TrustError, match="only to 1.0.0"):
        check_downgrade(running, ("llm", "0.9.0"), signed_rollback=["1.0.0"], rollback_ordered=True)
    with pytest.raises(TrustError, match="only to none"):
        check_downgrade(running, ("llm", "1.0.0"), signed_rollback=[], rollback_ordered=True)


def test_backoff_doubles_up_to_the_cap_and_jitters() -> None:
    b = Backoff(base_s=1.0, cap_s=60.0)
    assert [b.delay(n, 0.999999) for n in range(8)] == pytest.approx([1, 2, 4, 8, 16, 32, 60, 60], rel=1e-5)
    assert b.delay(3, 0.5) == 4.0
    assert b.delay(10_000, 0.0) == 0.0  # huge attempt numbers do not overflow


def test_rate_budget_allows_a_burst_then_paces_to_the_rate() -> None:
    r = RateBudget(1000, now=0.0)
    assert r.spend(1000, 0.0) == 0.0  # one second of burst
    assert r.spend(500, 0.0) == pytest.approx(0.5)
    # Sending 10 kB over time: the pauses add up to what the rate demands.
    r, t = RateBudget(1000, now=0.0), 0.0
    for _ in range(10):
        t += r.spend(1000, t)
    assert t == pytest.approx(9.0)


def test_rate_floor_judges_each_window_by_its_average() -> None:
    floor = RateFloor(1000, window_s=10.0, now=0.0)
    assert floor.too_slow(5000, 5.0) is None  # the window is not over yet
    assert floor.too_slow(6000, 10.0) is None  # 11,000 B in 10 s: above 1000 B/s
    assert floor.too_slow(1, 12.0) is None
    assert floor.too_slow(1, 21.0) == pytest.approx(2 / 11)  # a trickle: one read every few seconds
    assert floor.too_slow(20_000, 31.0) is None  # a new window starts after each verdict
