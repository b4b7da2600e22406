"""`edgeship experiment`: A/B experiments, two releases on two stable cohorts of the fleet."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from edgeship.cli.common import JsonOpt
from edgeship.cli.output import console
from edgeship.cli.remote import emit, operator_command
from edgeship.client import OperatorClient

app = typer.Typer(help="A/B experiments: which of two releases does better on the same fleet.", no_args_is_help=True)


def _started(e: dict[str, Any]) -> None:
    console.print(f"[green]started[/] experiment {e['id']}: {e['devices_a']} device(s) on {e['release_a']}, "
                  f"{e['devices_b']} on {e['release_b']}, until {e['ends_at'][:16]}")
    console.print(f"next: edgeship experiment status {e['id']}")


@operator_command(app, "start")
def start(
    client: OperatorClient,
    release_a: str = typer.Argument(..., help="Release A (NAME@VERSION)."),
    release_b: str = typer.Argument(..., help="Release B (NAME@VERSION)."),
    split: float = typer.Option(50.0, "--split", help="Percent of the targeted devices on A."),
    target: str | None = typer.Option(None, "--target", help="Devices whose tags match, e.g. site=berlin (default: the whole fleet)."),
    duration: str = typer.Option("24h", "--duration", help="How long to compare before the verdict is final."),
    json_out: bool = JsonOpt,
) -> None:
    """Give A to one cohort and B to the other; `experiment status` compares them."""
    emit(client.start_experiment(release_a, release_b, split, target, duration), json_out, _started)


def _verdicts(experiments: list[dict[str, Any]]) -> None:
    if not experiments:
        console.print("no experiments; start one with `edgeship experiment start A B`")
    for e in experiments:
        console.print(f"[bold]{e['id']}[/]  A={e['release_a']} ({e['devices_a']} devices)  B={e['release_b']} "
                      f"({e['devices_b']} devices)  {e['status']} until {e['ends_at'][:16]}")
        table = Table("METRIC", "TEST", "A", "B", "P", "BETTER", box=None)
        for c in e["comparisons"]:
            p = "-" if c["p_value"] is None else f"{c['p_value']:.3g}"
            table.add_row(c["metric"], c["test"], f"{c['a']:.3g}", f"{c['b']:.3g}", p, c["better"] or "-")
        console.print(table)
        console.print(f"[bold]{e['verdict']}[/]: {e['reason']}")


@operator_command(app, "status")
def status(
    client: OperatorClient,
    experiment_id: str | None = typer.Argument(None, help="Experiment ID (default: every experiment)."),
    json_out: bool = JsonOpt,
) -> None:
    """Install success, latency and feedback per arm, and which release is better (or that it is too early)."""
    if experiment_id:
        emit(client.experiment(experiment_id), json_out, lambda e: _verdicts([e]))
    else:
        emit(client.experiments(), json_out, _verdicts)
