"""The fleet simulator drives the real engine: bad releases stop early, rollbacks bring devices back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeship.cli.main import run
from edgeship.errors import UsageError
from edgeship.rollout import MaintenanceWindow, OnFail, RolloutPolicy, RolloutStatus
from edgeship.sim.config import Faults, SimConfig
from edgeship.sim.report import build_report
from edgeship.sim.runner import PREVIOUS, RELEASE, simulate

FAULTS = Faults.parse("crash-download=0.01,power-loss-switch=0.005,slow-link=0.1,offline=0.05,corrupt=0.001")


def policy(**kw: object) -> RolloutPolicy:
    return RolloutPolicy.from_options(bake="20m", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("pilot", ["ring=pilot", None])
def test_bad_release_affects_no_more_than_pilot_and_first_stage(seed: int, pilot: str | None) -> None:
    cfg = SimConfig(devices=3000, seed=seed, release_bad_rate=0.3, faults=FAULTS, policy=policy(pilot=pilot))
    result = simulate(cfg)
    state = result.decision.rollout.state
    assert state.status is RolloutStatus.PAUSED
    assert state.phase == 0  # the pilot, or the first stage when there is no pilot
    assert "failed" in state.reason
    assert 0 < result.fleet.ran.sum() <= result.fleet.started.sum() <= result.first_stage_size


def test_rollback_order_brings_every_affected_device_back() -> None:
    cfg = SimConfig(
        devices=3000, seed=7, release_bad_rate=0.05, faults=FAULTS, policy=policy(on_fail="rollback", pilot=None)
    )
    result = simulate(cfg)
    state = result.decision.rollout.state
    assert state.status is RolloutStatus.ABORTED and state.rollback
    assert result.fleet.rollback_orders > 0
    assert result.decision.rollback_remaining == 0
    views = result.fleet.views()
    assert all(v.current == PREVIOUS for v in views)
    assert result.fleet.ran.sum() > 0  # there was something to bring back


def test_good_release_reaches_every_eligible_device_despite_faults() -> None:
    result = simulate(SimConfig(devices=2000, seed=11, faults=FAULTS, policy=policy()))
    d = result.decision
    assert d.rollout.state.status is RolloutStatus.COMPLETED
    eligible = 2000 - d.skipped
    on_release = sum(v.current == RELEASE for v in result.fleet.views())
    assert d.skipped > 0  # the 1 GiB boards miss the 2 GiB requirement
    assert on_release >= eligible - sum(s.failed for s in d.stages)
    assert [e.status for e in result.events][-1] is RolloutStatus.COMPLETED


def test_switches_happen_inside_each_devices_local_window() -> None:
    window = MaintenanceWindow.parse("02:00-04:00")
    cfg = SimConfig(devices=400, seed=5, policy=policy(window="02:00-04:00", notice="1h", pilot=None))
    result = simulate(cfg)
    zones = [v.facts.timezone for v in result.fleet.views()]
    switches = [(zones[i], float(result.fleet.switched_at[i])) for i in np.flatnonzero(result.fleet.ran)]
    assert len(switches) > 300
    assert all(window.contains(t, tz) for tz, t in switches)
    assert len({tz for tz, _ in switches}) >= 5
    assert result.decision.rollout.state.status is RolloutStatus.COMPLETED


def test_same_seed_same_run() -> None:
    cfg = SimConfig(devices=500, seed=3, release_bad_rate=0.1, faults=FAULTS, policy=policy())
    assert build_report(simulate(cfg)) == build_report(simulate(cfg))


def test_unknown_fault_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="known faults"):
        Faults.parse("meteor=0.1")
    with pytest.raises(UsageError):
        Faults.parse("offline=2")


@pytest.mark.parametrize("fault", ["crash-download=1", "power-loss-switch=1"])
def test_a_fault_on_every_attempt_is_refused_not_run_forever(fault: str) -> None:
    # Retried until it gets through: at rate 1 the simulation never ended.
    with pytest.raises(UsageError, match="never end"):
        Faults.parse(fault)
    assert Faults.parse("corrupt=1,offline=1").corrupt == 1  # these give up or wait: the run ends


def test_cli_writes_report_and_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(
        ["simulate", "--devices", "800", "--release-bad-rate", "0.3", "--on-fail", "rollback",
         "--fault", "offline=0.05", "--seed", "4", "--out", str(tmp_path), "--json"]
    )  # fmt: skip
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    written = json.loads((tmp_path / "report.json").read_text())
    assert printed["result"] == written["result"]
    assert written["result"]["status"] == "aborted" and written["timeline"]
    assert (tmp_path / "rollout.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_tables_and_bad_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["simulate", "--devices", "300", "--bake", "5m", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "completed" in out and "timeline" in out
    assert run(["simulate", "--fault", "meteor=1", "--out", str(tmp_path)]) == 2
    assert "unknown fault" in capsys.readouterr().err
    assert run(["simulate", "--stages", "50,10", "--out", str(tmp_path)]) == 1


def test_on_fail_defaults_to_pause() -> None:
    assert SimConfig().policy.on_fail is OnFail.PAUSE


def test_degraded_health_alone_stops_the_rollout() -> None:
    # Every trial passes, but the release runs worse on the boards it is bad for.
    cfg = SimConfig(devices=3000, seed=9, release_bad_rate=0.5, bad_trial_failure=0.0, policy=policy(pilot=None))
    result = simulate(cfg)
    state = result.decision.rollout.state
    assert state.status is RolloutStatus.PAUSED and state.phase <= 1
    assert state.reason.startswith("health regression: error rate")
    assert all(s.failed == 0 for s in result.decision.stages)
