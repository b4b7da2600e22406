"""`edgeship experiment`: A/B experiments, two releases on two stable cohorts of the fleet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from edgeship.cli.common import JsonOpt, WorkspaceOpt
from edgeship.cli.output import console, print_json
from edgeship.cli.remote import CaOpt, ServerOpt, TokenOpt, operator_client

app = typer.Typer(help="A/B experiments: which of two releases does better on the same fleet.", no_args_is_help=True)


@app.command("start")
def start(
    release_a: str = typer.Argument(..., help="Release A (NAME@VERSION)."),
    release_b: str = typer.Argument(..., help="Release B (NAME@VERSION)."),
    split: float = typer.Option(50.0, "--split", help="Percent of the targeted devices on A."),
    target: str | None = typer.Option(None, "--target", help="Devices whose tags match, e.g. site=berlin (default: the whole fleet)."),
    duration: str = typer.Option("24h", "--duration", help="How long to compare before the verdict is final."),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
    ca: Path | None = CaOpt,
    workspace: Path | None = WorkspaceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Give A to one cohort and B to the other; `experiment status` compares them."""
    with operator_client(server, token, ca, workspace) as client:
        result = client.start_experiment(release_a, release_b, split, target, duration)
    if json_out:
        print_json(result)
        return
    console.print(f"[green]started[/] experiment {result['id']}: {result['devices_a']} device(s) on {result['release_a']}, "
                  f"{result['devices_b']} on {result['release_b']}, until {result['ends_at'][:16]}")
    console.print(f"next: edgeship experiment status {result['id']}")


@app.command("status")
def status(
    experiment_id: str | None = typer.Argument(None, help="Experiment ID (default: every experiment)."),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
    ca: Path | None = CaOpt,
    workspace: Path | None = WorkspaceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Install success, latency and feedback per arm, and which release is better (or that it is too early)."""
    with operator_client(server, token, ca, workspace) as client:
        result = [client.experiment(experiment_id)] if experiment_id else client.experiments()
    if json_out:
        print_json(result[0] if experiment_id else result)
        return
    if not result:
        console.print("no experiments; start one with `edgeship experiment start A B`")
    for e in result:
        _print(e)


def _print(e: dict[str, Any]) -> None:
    console.print(f"[bold]{e['id']}[/]  A={e['release_a']} ({e['devices_a']} devices)  B={e['release_b']} ({e['devices_b']} devices)  "
                  f"{e['status']} until {e['ends_at'][:16]}")
    table = Table("METRIC", "TEST", "A", "B", "P", "BETTER", box=None)
    for c in e["comparisons"]:
        p = "-" if c["p_value"] is None else f"{c['p_value']:.3g}"
        table.add_row(c["metric"], c["test"], f"{c['a']:.3g}", f"{c['b']:.3g}", p, c["better"] or "-")
    console.print(table)
    console.print(f"[bold]{e['verdict']}[/]: {e['reason']}")
