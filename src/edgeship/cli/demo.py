"""`edgeship demo`: run the story on embedded defaults and narrate it."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeship.cli.output import console, print_json
from edgeship.demo.walkthrough import run_walkthrough
from edgeship.errors import EdgeshipError


def demo(
    out: Path | None = typer.Option(None, "--out", help="Directory for the demo's workspace and files (default: a new temp dir)."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Run the walk-through: sign and push two releases of a tiny LLM, ship v2 as a delta, verify, catch tampering.

    Needs nothing but this package: models are generated, no server or download involved.
    """

    def narrate(step: str, detail: str) -> None:
        if not json_out:
            console.print(f"[bold cyan]{step:>7}[/]  {detail}")

    summary = run_walkthrough(out, narrate)
    ok = summary.delta_exact and summary.tamper_refused and len(summary.verified) == len(summary.releases)
    if json_out:
        print_json({**summary.to_dict(), "ok": ok})
    else:
        console.print(f"[bold green]done[/]  workspace kept at {summary.workspace}" if ok else "[bold red]demo failed[/]")
    if not ok:
        raise EdgeshipError("the walk-through did not end as expected", hint="see the steps above")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
