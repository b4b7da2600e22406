"""`edgeship rollout`: staged rollouts on the update server (start, watch, pause, resume, abort, promote)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from edgeship.cli.common import JsonOpt, WorkspaceOpt
from edgeship.cli.output import console, print_json
from edgeship.cli.remote import CaOpt, ServerOpt, TokenOpt, operator_client
from edgeship.errors import NotFoundError

app = typer.Typer(help="Staged rollouts: pilot, stages, bake times, failure budgets, automatic pause or rollback.", no_args_is_help=True)

_COLOUR = {"paused": "yellow", "aborted": "red", "completed": "green", "baking": "cyan", "rolling": "blue"}


@app.command("start")
def start(
    release: str = typer.Argument(..., help="NAME@VERSION pushed to the server (NAME alone: its newest version)."),
    target: str | None = typer.Option(None, "--target", help="Devices whose tags match, e.g. site=berlin,hw=pi5 (default: the whole fleet)."),
    device: list[str] = typer.Option([], "--device", help="A device ID; repeat for several (instead of --target)."),
    pilot: str = typer.Option("ring=pilot", "--pilot", help="Pilot group that goes first and must all succeed ('' for none)."),
    stages: str = typer.Option("1,10,50,100", "--stages", help="Stage percentages of the targeted devices."),
    bake: str = typer.Option("30m", "--bake", help="How long the pilot and each stage are watched once installed."),
    max_failure: str = typer.Option("2%", "--max-failure", help="Failure budget: share of a stage's devices that may fail."),
    window: str | None = typer.Option(None, "--window", help="Maintenance window in device local time, e.g. 02:00-04:00."),
    notice: str | None = typer.Option(None, "--notice", help="Tell devices this long before they switch, e.g. 1h."),
    on_fail: str = typer.Option("pause", "--on-fail", help="Over budget: pause, or rollback (abort and order devices back)."),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
    ca: Path | None = CaOpt,
    workspace: Path | None = WorkspaceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Start rolling RELEASE out: pilot first, then each stage after its bake."""
    with operator_client(server, token, ca, workspace) as client:
        result = client.start_rollout(
            release=release, target=target, device_ids=device, pilot=pilot, stages=stages, bake=bake,
            max_failure=max_failure, window=window, notice=notice, on_fail=on_fail,
        )
    if json_out:
        print_json(result)
        return
    console.print(f"[green]started[/] rollout {result['id']} of {result['release']} to {result['target']}"
                  + (f" (rollback to {result['previous']})" if result["previous"] else " (no signed rollback_to: it can only pause)"))
    console.print(render(result))
    console.print(f"next: edgeship rollout status {result['id']} --watch")


@app.command("status")
def status(
    rollout_id: str | None = typer.Argument(None, help="Rollout ID (default: the newest rollout)."),
    watch: bool = typer.Option(False, "--watch", help="Keep the view up to date until the rollout finishes or Ctrl-C."),
    interval: float = typer.Option(2.0, "--interval", min=0.2, help="Seconds between refreshes with --watch."),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
    ca: Path | None = CaOpt,
    workspace: Path | None = WorkspaceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Per stage: devices targeted, done, failed, in progress, and the bake time left."""
    with operator_client(server, token, ca, workspace) as client:
        def fetch() -> dict[str, Any]:
            if rollout_id:
                return client.rollout(rollout_id)
            newest = client.rollouts()
            if not newest:
                raise NotFoundError("no rollout on this server yet", hint="start one with `edgeship rollout start NAME@VERSION`")
            return newest[0]

        result = fetch()
        if json_out:
            print_json(result)
            return
        if not watch:
            console.print(render(result))
            return
        with Live(render(result), console=console, refresh_per_second=4) as live:
            while result["status"] not in ("completed", "aborted") or result["rollback_remaining"]:
                time.sleep(interval)
                result = fetch()
                live.update(render(result))


@app.command("list")
def list_rollouts(
    active: bool = typer.Option(False, "--active", help="Only rollouts still running, paused or rolling back."),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
    ca: Path | None = CaOpt,
    workspace: Path | None = WorkspaceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Rollouts, newest first."""
    with operator_client(server, token, ca, workspace) as client:
        result = client.rollouts(include_finished=not active)
    if json_out:
        print_json(result)
        return
    if not result:
        console.print("no rollouts; start one with `edgeship rollout start NAME@VERSION`")
        return
    table = Table("ROLLOUT", "RELEASE", "TARGET", "STATUS", "PHASE", "DONE", "CREATED", box=None)
    for r in result:
        done = sum(s["done"] for s in r["stages"])
        targeted = sum(s["targeted"] for s in r["stages"])
        table.add_row(r["id"], r["release"], r["target"], _status(r["status"]), r["phase"], f"{done}/{targeted}", r["created_at"][:19])
    console.print(table)


def _action(action: str, rollout_id: str, reason: str | None, rollback: bool, server: str | None, token: str | None,
            ca: Path | None, workspace: Path | None, json_out: bool) -> None:
    with operator_client(server, token, ca, workspace) as client:
        result = client.rollout_action(rollout_id, action, reason, rollback)
    if json_out:
        print_json(result)
        return
    console.print(render(result))


RolloutArg = typer.Argument(..., help="Rollout ID (ro_…).")
ReasonOpt = typer.Option(None, "--reason", help="Why, for the audit trail and the webhook.")


@app.command("pause")
def pause_cmd(rollout_id: str = RolloutArg, reason: str | None = ReasonOpt, server: str | None = ServerOpt, token: str | None = TokenOpt,
              ca: Path | None = CaOpt, workspace: Path | None = WorkspaceOpt, json_out: bool = JsonOpt) -> None:
    """Stop handing the release to more devices; devices already installing carry on."""
    _action("pause", rollout_id, reason, True, server, token, ca, workspace, json_out)


@app.command("resume")
def resume_cmd(rollout_id: str = RolloutArg, server: str | None = ServerOpt, token: str | None = TokenOpt,
               ca: Path | None = CaOpt, workspace: Path | None = WorkspaceOpt, json_out: bool = JsonOpt) -> None:
    """Continue a paused rollout in the same stage; its bake starts again."""
    _action("resume", rollout_id, None, True, server, token, ca, workspace, json_out)


@app.command("abort")
def abort_cmd(rollout_id: str = RolloutArg, reason: str | None = ReasonOpt,
              rollback: bool = typer.Option(True, "--rollback/--no-rollback", help="Order devices that took the release back to the previous one."),
              server: str | None = ServerOpt, token: str | None = TokenOpt, ca: Path | None = CaOpt,
              workspace: Path | None = WorkspaceOpt, json_out: bool = JsonOpt) -> None:
    """Stop for good; by default every device that took the release is ordered back."""
    _action("abort", rollout_id, reason, rollback, server, token, ca, workspace, json_out)


@app.command("promote")
def promote_cmd(rollout_id: str = RolloutArg, server: str | None = ServerOpt, token: str | None = TokenOpt,
                ca: Path | None = CaOpt, workspace: Path | None = WorkspaceOpt, json_out: bool = JsonOpt) -> None:
    """Move to the next stage now, skipping what is left of the bake."""
    _action("promote", rollout_id, None, True, server, token, ca, workspace, json_out)


def _status(status: str) -> str:
    colour = _COLOUR.get(status)
    return f"[{colour}]{status}[/]" if colour else status


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def render(r: dict[str, Any]) -> Group:
    """The rollout as a headline, one row per stage with a progress bar, and why it stopped."""
    head = Text.from_markup(f"[bold]{r['id']}[/]  {r['release']} → {r['target']}  {_status(r['status'])} in {r['phase']}")
    table = Table("STAGE", "TARGETED", "DONE", "FAILED", "IN PROGRESS", "STATUS", "BAKE LEFT", "", box=None)
    for s in r["stages"]:
        bar = ProgressBar(total=max(1, s["targeted"]), completed=s["done"], width=20)
        table.add_row(s["name"], str(s["targeted"]), str(s["done"]), str(s["failed"]), str(s["in_progress"]),
                      _status(s["status"]), _clock(s["bake_left"]), bar)
    lines: list[Any] = [head, table]
    if r["reason"]:
        lines.append(Text.from_markup(f"[yellow]reason:[/] {r['reason']}"))
    if r["rollback"]:
        lines.append(Text(f"rolling back to {r['previous']}: {r['rollback_remaining']} device(s) still to bring back"))
    if r["skipped"]:
        lines.append(Text(f"{r['skipped']} device(s) skipped: they do not meet the release's requirements"))
    return Group(*lines)
