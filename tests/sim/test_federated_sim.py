"""Federated rounds rehearsed on virtual devices under the server's round rules."""

from __future__ import annotations

import json

import pytest

from edgeship.cli.main import run
from edgeship.errors import UsageError
from edgeship.sim.federated import FedSimConfig, simulate_rounds


def test_a_healthy_fleet_completes_every_round_before_the_deadline() -> None:
    rounds = simulate_rounds(FedSimConfig(devices=500, rounds=3, min_participants=500, deadline_s=600))
    for r in rounds:
        assert r.outcome.used and r.outcome.accepted == 500 and r.outcome.dropped == 0
        assert r.closed_at < 600  # closed when the last device answered, not at the deadline


def test_stragglers_and_dropouts_are_dropped_at_the_deadline() -> None:
    c = FedSimConfig(devices=2000, rounds=2, min_participants=1, dropout_rate=0.1, straggler_rate=0.1, reject_rate=0.05, seed=3)
    for r in simulate_rounds(c):
        o = r.outcome
        assert r.closed_at == c.deadline_s
        assert 300 < o.dropped < 500  # ~10% dropouts + ~9% stragglers
        assert 50 < o.rejected < 120 and o.accepted + o.rejected + o.dropped == 2000


def test_too_few_accepted_updates_abandon_the_round() -> None:
    [r] = simulate_rounds(FedSimConfig(devices=100, rounds=1, min_participants=95, dropout_rate=0.5, seed=1))
    assert not r.outcome.used and "fewer than the minimum 95" in r.outcome.reason


def test_same_seed_same_rounds_and_cohort_limits_participants() -> None:
    c = FedSimConfig(devices=1000, rounds=2, cohort_size=50, dropout_rate=0.2, seed=7)
    assert simulate_rounds(c) == simulate_rounds(c)
    assert all(r.outcome.cohort == 50 for r in simulate_rounds(c))
    with pytest.raises(UsageError):
        FedSimConfig(straggler_rate=1.5)


def test_cli_federated_rounds(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["simulate", "--federated", "--devices", "10000", "--rounds", "2", "--min-participants", "9500", "--seed", "2"]
    assert run([*args, "--dropout-rate", "0.05", "--straggler-rate", "0.05", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["completed"] for r in report["rounds"]] == [False, False]
    assert all(r["dropped"] > 500 for r in report["rounds"])
    assert run(args) == 0  # no faults: every device answers in time
    out = capsys.readouterr().out
    assert "completed" in out and "every cohort member answered" in out
    assert run(["simulate", "--federated", "--reject-rate", "-1"]) == 2
    assert "not a share" in capsys.readouterr().err
