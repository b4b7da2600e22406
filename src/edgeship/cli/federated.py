"""`edgeship federated`: federated learning rounds on the update server (start, status, pull)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from edgeship.cli.common import JsonOpt
from edgeship.cli.output import console, human_size
from edgeship.cli.remote import emit, operator_command
from edgeship.client import OperatorClient
from edgeship.units import parse_duration, parse_size

app = typer.Typer(help="Federated learning: devices train on their own data, the server averages their weight updates into a candidate.", no_args_is_help=True)


@operator_command(app, "start")
def start(
    client: OperatorClient,
    release: str = typer.Argument(..., help="NAME@VERSION pushed to the server: the signed base every device trains."),
    target: str | None = typer.Option(None, "--target", help="Devices whose tags match, e.g. site=berlin,hw=pi5 (default: the whole fleet)."),
    rounds: int = typer.Option(1, "--rounds", min=1, help="Rounds to run, one after the other."),
    min_participants: int = typer.Option(2, "--min-participants", min=1, help="Accepted updates a round needs to be used."),
    local_steps: int = typer.Option(10, "--local-steps", min=1, help="Training steps each device takes per round."),
    cohort: int | None = typer.Option(None, "--cohort", min=1, help="At most this many of the matching devices take part (default: all)."),
    clip: float | None = typer.Option(None, "--clip", min=0.0, help="Scale each update down to this L2 norm before averaging."),
    noise: float = typer.Option(0.0, "--noise", min=0.0, help="Gaussian noise multiplier (std = noise x clip / participants); needs --clip."),
    max_norm: float = typer.Option(100.0, "--max-norm", min=0.0, help="Reject updates with a larger L2 norm."),
    deadline: str = typer.Option("10m", "--deadline", help="Round deadline: updates later than this are dropped (e.g. 90s, 10m, 2h)."),
    max_update: str = typer.Option("64MiB", "--max-update", help="Largest update a device may upload."),
    json_out: bool = JsonOpt,
) -> None:
    """Start federated rounds of RELEASE on the devices --target selects."""
    run = client.start_federated(
        release=release, target=target or "", rounds=rounds, min_participants=min_participants, local_steps=local_steps,
        cohort_size=cohort, clip_norm=clip, noise_multiplier=noise, max_norm=max_norm, deadline_s=parse_duration(deadline),
        max_update_bytes=parse_size(max_update),
    )
    emit(run, json_out, _started)


def _started(run: dict[str, Any]) -> None:
    console.print(f"[green]started[/] federated run {run['id']} of {run['release']} on {len(run['cohort'])} devices ({run['target']})")
    console.print(f"next: edgeship federated status {run['id']}")


@operator_command(app, "status")
def status(
    client: OperatorClient,
    run_id: str | None = typer.Argument(None, help="Run ID (default: list every run)."),
    json_out: bool = JsonOpt,
) -> None:
    """Per round: cohort, updates accepted, rejected and dropped, sizes, mean loss, whether it was used."""
    if run_id is None:
        emit(client.federated_runs(), json_out, _list)
    else:
        emit(client.federated_run(run_id), json_out, show)


def _list(runs: list[dict[str, Any]]) -> None:
    if not runs:
        console.print("no federated runs; start one with `edgeship federated start NAME@VERSION`")
        return
    table = Table("RUN", "RELEASE", "TARGET", "STATUS", "ROUND", "COHORT", "CREATED", box=None)
    for r in runs:
        table.add_row(r["id"], r["release"], r["target"], r["status"], f"{r['round']}/{r['options']['rounds']}", str(len(r["cohort"])), r["created_at"][:19])
    console.print(table)


def show(run: dict[str, Any]) -> None:
    console.print(f"federated run {run['id']} of {run['release']} on {run['target']}: [bold]{run['status']}[/], round {run['round']}/{run['options']['rounds']}")
    table = Table("ROUND", "COHORT", "ACCEPTED", "REJECTED", "DROPPED", "MEAN UPDATE", "LOSS BEFORE", "LOSS AFTER", "USED", box=None)
    for r in run["rounds"]:
        sizes = r["update_bytes"]
        table.add_row(
            str(r["round"]), str(r["cohort"]), str(r["accepted"]), str(r["rejected"]), str(r["dropped"]),
            human_size(sum(sizes) // len(sizes)) if sizes else "-", _num(r["loss_before"]), _num(r["loss_after"]),
            "[green]yes[/]" if r["used"] else "[yellow]no[/]",
        )
    console.print(table)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@operator_command(app, "pull")
def pull(
    client: OperatorClient,
    run_id: str = typer.Argument(..., help="Run ID."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the candidate model (GGUF)."),
    round_no: int | None = typer.Option(None, "--round", min=1, help="A used round (default: the last one)."),
    json_out: bool = JsonOpt,
) -> None:
    """Download a run's candidate model and print its round's metrics; sign it yourself as a release."""
    got = client.pull_candidate(run_id, round_no, out.resolve())
    entry = next(r for r in client.federated_run(run_id)["rounds"] if r["round"] == got)
    emit({"path": str(out.resolve()), **entry}, json_out, _pulled)


def _pulled(r: dict[str, Any]) -> None:
    console.print(f"[green]pulled[/] round {r['round']} candidate to {r['path']} ({r['candidate']})")
    console.print(f"  {r['accepted']} updates, {r['samples']} samples, loss {_num(r['loss_before'])} -> {_num(r['loss_after'])}")
    console.print("next: read the metrics, then `edgeship release push NAME -v VERSION -c model:model/gguf=PATH` and roll it out in stages")
