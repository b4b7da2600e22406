"""`edgeship demo`: run the story on embedded defaults and narrate it."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from edgeship.cli.output import console, print_json
from edgeship.demo.walkthrough import run_walkthrough
from edgeship.errors import EdgeshipError, UsageError


def demo(
    devices: int = typer.Option(12, "--devices", min=4, help="Simulated devices (real agent processes); at least 4."),
    keep_running: bool = typer.Option(False, "--keep-running", help="Leave the server, broker and fleet up after the story until Ctrl-C."),
    out: Path | None = typer.Option(None, "--out", help="Directory for the demo's workspace, logs and report (default: a new temp dir)."),
    fast: bool = typer.Option(False, "--fast", help="Smaller models and shorter bakes (every step still runs)."),
    offline: bool = typer.Option(False, "--offline", help="Only the local walk-through: no server, no fleet, no network."),
    model: Path | None = typer.Option(
        None, "--model", help="Your own GGUF as the LLM (v1 as it is; v2 adds or marks its chat template, a tiny delta).", show_default=False
    ),
    learn: bool = typer.Option(False, "--learn", help="Add an act: four devices fine-tune the LLM on their own text in one federated round; "
                               "the candidate is signed and rolled out."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Ship a tiny LLM and image model to a simulated fleet: v1, v2 as deltas, a bad v3 stopped, a forgery refused.

    Starts a real update server (TLS), an MQTT broker, agent processes and runtimes on
    loopback, all in a temp workspace, and writes report.html. Models are generated (no
    download), unless --model names a GGUF of your own.
    """
    if offline:
        if model is not None:
            raise UsageError("--model runs the whole story; the --offline walk-through has no LLM to answer", hint="drop one of them")
        _walkthrough(out, json_out)
        return
    if learn and model is not None:
        raise UsageError("--learn fine-tunes the generated tiny LLM, not a --model of your own", hint="drop one of them")
    if model is not None:
        from edgeship.release.inspect import inspect_component
        from edgeship.release.manifest import ComponentKind

        inspect_component(ComponentKind.GGUF, model)  # a wrong path or file fails here, before anything starts
    from edgeship.demo.report import write_report
    from edgeship.demo.story import run_story

    def narrate(act: str, text: str) -> None:
        if not json_out:
            progress.console.print(f"[bold cyan]{act:>9}[/]  {text}")

    tasks: dict[str, TaskID] = {}

    def advance(task: str, done: int, total: int) -> None:
        if task not in tasks:
            tasks[task] = progress.add_task(task, total=total)
        progress.update(tasks[task], completed=done, total=total)

    def hold() -> None:
        progress.console.print("[bold]keeping the fleet running[/]: Ctrl-C stops every process")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass

    progress = Progress(TextColumn("{task.description:>18}"), BarColumn(), MofNCompleteColumn(), console=console,
                        disable=json_out, transient=False)
    with progress:
        summary = run_story(devices, out, fast=fast, model=model, learn=learn, narrate=narrate, progress=advance, keep_running=hold if keep_running else None)
    html, summary_json = write_report(summary, Path(summary.out))
    if json_out:
        print_json({**summary.to_dict(), "report": str(html), "problems": summary.check()})
    else:
        console.print(f"[bold green]done[/] in {summary.seconds:g} s  report: {html}  summary: {summary_json}" if summary.ok
                      else f"[bold red]demo failed[/]: {'; '.join(summary.check())}  report: {html}")
    if not summary.ok:
        raise EdgeshipError("the demo did not end as the story says", hint=f"see {html} and the logs beside it")


def _walkthrough(out: Path | None, json_out: bool) -> None:
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
