"""`edgeship simulate`: rehearse a rollout against a virtual fleet on a simulated clock."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from edgeship.cli.common import (
    BakeOpt,
    MaxFailureOpt,
    NoticeOpt,
    OnFailOpt,
    PilotOpt,
    StagesOpt,
    WindowOpt,
)
from edgeship.cli.output import console, err_console, print_json
from edgeship.rollout import Decision, RolloutPolicy
from edgeship.sim.federated import FedSimConfig, simulate_rounds
from edgeship.sim.config import Faults, SimConfig
from edgeship.sim.report import build_report, write_outputs
from edgeship.sim.runner import SimResult
from edgeship.sim.runner import simulate as run_simulation
from edgeship.units import parse_duration

DEFAULT_OUT = Path("edgeship-sim")


def simulate(
    devices: int = typer.Option(10_000, "--devices", "-n", help="Number of virtual devices."),
    release_bad_rate: float = typer.Option(
        0.0, "--release-bad-rate", help="Share of devices on which the new release misbehaves (0: a good release)."
    ),
    fault: str = typer.Option(
        "",
        "--fault",
        help="Fault rates, e.g. crash-download=0.01,power-loss-switch=0.005,slow-link=0.1,offline=0.05,corrupt=0.001.",
    ),
    stages: str = StagesOpt,
    bake: str = BakeOpt,
    max_failure: str = MaxFailureOpt,
    pilot: str = PilotOpt,
    window: str | None = WindowOpt,
    notice: str | None = NoticeOpt,
    on_fail: str = OnFailOpt,
    tick: str = typer.Option("5m", "--tick", help="Simulated time between engine decisions."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed replays the same run."),
    out: Path = typer.Option(DEFAULT_OUT, "--out", help="Directory for report.json and rollout.png."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON instead of tables."),
    real_agents: int = typer.Option(
        0, "--real-agents", min=0, help="Instead: run this many real agent processes against a real server on loopback, in real time (e.g. 20)."
    ),
    federated: bool = typer.Option(False, "--federated", help="Instead: rehearse federated rounds under the server's round rules."),
    rounds: int = typer.Option(5, "--rounds", min=1, help="--federated: rounds to run."),
    cohort: int | None = typer.Option(None, "--cohort", min=1, help="--federated: at most this many devices take part (default: all)."),
    min_participants: int = typer.Option(2, "--min-participants", min=1, help="--federated: accepted updates a round needs to be used."),
    deadline: str = typer.Option("10m", "--deadline", help="--federated: round deadline; later updates are dropped."),
    dropout_rate: float = typer.Option(0.0, "--dropout-rate", help="--federated: chance a device never answers in a round."),
    straggler_rate: float = typer.Option(0.0, "--straggler-rate", help="--federated: chance a device finishes after the deadline."),
    reject_rate: float = typer.Option(0.0, "--reject-rate", help="--federated: chance an update fails the server's checks."),
) -> None:
    """Run a rollout against virtual devices with faults, on the real engine, and chart it."""
    if federated:
        _federated(FedSimConfig(devices=devices, rounds=rounds, cohort_size=cohort, min_participants=min_participants,
                                deadline_s=parse_duration(deadline), dropout_rate=dropout_rate, straggler_rate=straggler_rate,
                                reject_rate=reject_rate, seed=seed), json_out)
        return
    if real_agents:
        plan = {"stages": stages, "bake": bake, "max_failure": max_failure, "pilot": pilot, "window": window, "notice": notice, "on_fail": on_fail}
        _real_agents(real_agents, plan, release_bad_rate, seed, out, json_out)
        return
    policy = RolloutPolicy.from_options(
        stages=stages, bake=bake, max_failure=max_failure, pilot=pilot or None, window=window, notice=notice, on_fail=on_fail
    )
    config = SimConfig(
        devices=devices,
        seed=seed,
        release_bad_rate=release_bad_rate,
        faults=Faults.parse(fault),
        policy=policy,
        tick=parse_duration(tick),
    )
    if json_out:
        result = run_simulation(config)
    else:
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err_console, transient=True
        ) as bar:
            task = bar.add_task("simulating", total=devices)

            def on_tick(t: float, decision: Decision, counts: Mapping[str, int]) -> None:
                state = decision.rollout.state
                phase = decision.rollout.policy.phases[state.phase].name
                bar.update(
                    task,
                    completed=counts.get("on_release", 0),
                    description=f"+{_clock(t)} {phase} {state.status.value}",
                )

            result = run_simulation(config, on_tick)
    paths = write_outputs(result, out)
    if json_out:
        print_json({**build_report(result), "files": {k: str(v) for k, v in paths.items()}})
        return
    _print(result)
    console.print(f"wrote [bold]{paths['report']}[/] and [bold]{paths['chart']}[/]")


def _print(result: SimResult) -> None:
    start = result.config.start
    timeline = Table(title="timeline", title_justify="left")
    for col in ("time", "status", "phase", "event"):
        timeline.add_column(col)
    for e in result.events:
        colour = {"paused": "yellow", "aborted": "red", "completed": "green"}.get(e.status.value, "")
        status = f"[{colour}]{e.status.value}[/]" if colour else e.status.value
        timeline.add_row(f"+{_clock(e.at - start)}", status, e.phase, e.message)
    console.print(timeline)
    stages = Table(title="stages", title_justify="left")
    for col in ("stage", "targeted", "done", "failed", "in progress", "status"):
        stages.add_column(col, justify="left" if col in {"stage", "status"} else "right")
    for s in result.decision.stages:
        stages.add_row(s.name, str(s.targeted), str(s.done), str(s.failed), str(s.in_progress), s.status)
    console.print(stages)
    d = result.decision
    console.print(
        f"[bold]{d.rollout.state.status.value}[/] after {_clock(result.duration)} simulated; "
        f"{int(result.fleet.ran.sum())} devices ran the release (pilot + first stage: {result.first_stage_size}); "
        f"{d.skipped} skipped for requirements; {result.fleet.rollback_orders} rollback orders carried out; "
        f"{result.on_previous_at_end} on the previous release at the end"
    )


def _federated(config: FedSimConfig, json_out: bool) -> None:
    began = time.monotonic()
    result = simulate_rounds(config)
    wall = time.monotonic() - began
    rows = [{"round": r.number, "cohort": r.outcome.cohort, "received": r.outcome.received, "accepted": r.outcome.accepted,
             "rejected": r.outcome.rejected, "dropped": r.outcome.dropped, "closed_after_s": round(r.closed_at, 1),
             "completed": r.outcome.used, "reason": r.outcome.reason} for r in result]
    if json_out:
        print_json({"devices": config.devices, "rounds": rows, "wall_s": round(wall, 3)})
        return
    table = Table(title=f"federated rounds on {config.devices} virtual devices", title_justify="left")
    for col in ("round", "cohort", "accepted", "rejected", "dropped", "closed after", "outcome"):
        table.add_column(col, justify="left" if col == "outcome" else "right")
    for r in result:
        o = r.outcome
        verdict = "[green]completed[/]" if o.used else "[red]abandoned[/]"
        table.add_row(str(r.number), str(o.cohort), str(o.accepted), str(o.rejected), str(o.dropped), _clock(r.closed_at), verdict)
    console.print(table)
    for r in result:
        console.print(f"round {r.number}: {r.outcome.reason}")
    used = sum(r.outcome.used for r in result)
    console.print(f"{used} of {len(result)} rounds completed; {wall:.2f} s wall")


def _real_agents(n: int, plan: dict[str, str | None], bad_rate: float, seed: int, out: Path, json_out: bool) -> None:
    # Imported here: they need the server extra, which virtual runs do without.
    from edgeship.cli.rollout import render
    from edgeship.sim.agents import rehearse

    began = time.monotonic()

    def line(r: dict) -> None:
        stages = "  ".join(f"{s['name']} {s['done']}/{s['failed']}/{s['in_progress']}" for s in r["stages"])
        err_console.print(f"+{time.monotonic() - began:5.0f}s {r['status']:<9} {r['phase']:<6} {stages}  (done/failed/in progress)")

    run = rehearse(n, plan, out, release_bad_rate=bad_rate, pilot=max(1, n // 10), seed=seed, progress=None if json_out else line)
    if json_out:
        print_json({"final": run.final, "timeline": run.timeline, "versions": run.versions, "pilot": run.pilot_devices})
        return
    console.print(render(run.final))
    on = Counter(v or "-" for v in run.versions.values())
    console.print("devices at the end: " + ", ".join(f"{k}: {v}" for k, v in sorted(on.items())) + f"; logs in {out}")


def _clock(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m"


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
