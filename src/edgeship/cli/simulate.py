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
) -> None:
    """Run a rollout against virtual devices with faults, on the real engine, and chart it."""
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
        f"{len(result.fleet.ran)} devices ran the release (pilot + first stage: {result.first_stage_size}); "
        f"{d.skipped} skipped for requirements; {result.fleet.rollback_orders} rollback orders carried out; "
        f"{result.on_previous_at_end} on the previous release at the end"
    )


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
