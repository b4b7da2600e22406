"""`edgeship rollout`: staged rollouts on the update server (start, watch, pause, resume, abort, promote)."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.console import Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from edgeship.cli.common import (
    BakeOpt,
    JsonOpt,
    MaxFailureOpt,
    NoticeOpt,
    OnFailOpt,
    PilotOpt,
    StagesOpt,
    WindowOpt,
)
from edgeship.cli.output import console
from edgeship.cli.remote import emit, operator_command
from edgeship.client import OperatorClient
from edgeship.errors import NotFoundError

app = typer.Typer(help="Staged rollouts: pilot, stages, bake times, failure budgets, automatic pause or rollback.", no_args_is_help=True)

_COLOUR = {"paused": "yellow", "aborted": "red", "completed": "green", "baking": "cyan", "rolling": "blue"}


def _started(r: dict[str, Any]) -> None:
    back = f" (rollback to {r['previous']})" if r["previous"] else " (no signed rollback_to: it can only pause)"
    console.print(f"[green]started[/] rollout {r['id']} of {r['release']} to {r['target']}{back}")
    show(r)
    console.print(f"next: edgeship rollout status {r['id']} --watch")


@operator_command(app, "start")
def start(
    client: OperatorClient,
    release: str = typer.Argument(..., help="NAME@VERSION pushed to the server (NAME alone: its newest version)."),
    target: str | None = typer.Option(None, "--target", help="Devices whose tags match, e.g. site=berlin,hw=pi5 (default: the whole fleet)."),
    device: list[str] = typer.Option([], "--device", help="A device ID; repeat for several (instead of --target)."),
    pilot: str = PilotOpt,
    stages: str = StagesOpt,
    bake: str = BakeOpt,
    max_failure: str = MaxFailureOpt,
    window: str | None = WindowOpt,
    notice: str | None = NoticeOpt,
    on_fail: str = OnFailOpt,
    rollback_to: str | None = typer.Option(
        None, "--rollback-to", help="Version an automatic rollback goes to; one the release signed (default: the version pushed before it)."
    ),
    json_out: bool = JsonOpt,
) -> None:
    """Start rolling RELEASE out: pilot first, then each stage after its bake."""
    result = client.start_rollout(
        release=release, target=target, device_ids=device, pilot=pilot, stages=stages, bake=bake,
        max_failure=max_failure, window=window, notice=notice, on_fail=on_fail, rollback_to=rollback_to,
    )
    emit(result, json_out, _started)


def _newest(client: OperatorClient) -> dict[str, Any]:
    newest = client.rollouts()
    if not newest:
        raise NotFoundError("no rollout on this server yet", hint="start one with `edgeship rollout start NAME@VERSION`")
    return newest[0]


@operator_command(app, "status")
def status(
    client: OperatorClient,
    rollout_id: str | None = typer.Argument(None, help="Rollout ID (default: the newest rollout)."),
    watch: bool = typer.Option(False, "--watch", help="Keep the view up to date until the rollout finishes or Ctrl-C."),
    interval: float = typer.Option(2.0, "--interval", min=0.2, help="Seconds between refreshes with --watch."),
    json_out: bool = JsonOpt,
) -> None:
    """Per stage: devices targeted, done, failed, in progress, and the bake time left."""
    def fetch() -> dict[str, Any]:
        return client.rollout(rollout_id) if rollout_id else _newest(client)

    result = fetch()
    if json_out or not watch:
        emit(result, json_out, show)
        return
    with Live(render(result), console=console, refresh_per_second=4) as live:
        while result["status"] not in ("completed", "aborted") or result["rollback_remaining"]:
            time.sleep(interval)
            result = fetch()
            live.update(render(result))


def _table(rollouts: list[dict[str, Any]]) -> None:
    if not rollouts:
        console.print("no rollouts; start one with `edgeship rollout start NAME@VERSION`")
        return
    table = Table("ROLLOUT", "RELEASE", "TARGET", "STATUS", "PHASE", "DONE", "CREATED", box=None)
    for r in rollouts:
        done = sum(s["done"] for s in r["stages"])
        targeted = sum(s["targeted"] for s in r["stages"])
        table.add_row(r["id"], r["release"], r["target"], _status(r["status"]), r["phase"], f"{done}/{targeted}", r["created_at"][:19])
    console.print(table)


@operator_command(app, "list")
def list_rollouts(
    client: OperatorClient,
    active: bool = typer.Option(False, "--active", help="Only rollouts still running, paused or rolling back."),
    json_out: bool = JsonOpt,
) -> None:
    """Rollouts, newest first."""
    emit(client.rollouts(include_finished=not active), json_out, _table)


RolloutArg = typer.Argument(..., help="Rollout ID (ro_…).")
ReasonOpt = typer.Option(None, "--reason", help="Why, for the audit trail and the webhook.")


@operator_command(app, "pause")
def pause_cmd(client: OperatorClient, rollout_id: str = RolloutArg, reason: str | None = ReasonOpt, json_out: bool = JsonOpt) -> None:
    """Stop handing the release to more devices; devices already installing carry on."""
    emit(client.rollout_action(rollout_id, "pause", reason), json_out, show)


@operator_command(app, "resume")
def resume_cmd(client: OperatorClient, rollout_id: str = RolloutArg, json_out: bool = JsonOpt) -> None:
    """Continue a paused rollout in the same stage; its bake starts again."""
    emit(client.rollout_action(rollout_id, "resume"), json_out, show)


@operator_command(app, "abort")
def abort_cmd(
    client: OperatorClient,
    rollout_id: str = RolloutArg,
    reason: str | None = ReasonOpt,
    rollback: bool = typer.Option(True, "--rollback/--no-rollback", help="Order devices that took the release back to the previous one."),
    json_out: bool = JsonOpt,
) -> None:
    """Stop for good; by default every device that took the release is ordered back."""
    emit(client.rollout_action(rollout_id, "abort", reason, rollback), json_out, show)


@operator_command(app, "promote")
def promote_cmd(client: OperatorClient, rollout_id: str = RolloutArg, json_out: bool = JsonOpt) -> None:
    """Move to the next stage now, skipping what is left of the bake."""
    emit(client.rollout_action(rollout_id, "promote"), json_out, show)


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
    if r["health_regressions"] and not r["reason"].startswith("health regression"):
        lines.append(Text.from_markup("[yellow]health:[/] " + "; ".join(r["health_regressions"])))
    if r["rollback"]:
        lines.append(Text(f"rolling back to {r['previous']}: {r['rollback_remaining']} device(s) still to bring back"))
    if r["skipped"]:
        lines.append(Text(f"{r['skipped']} device(s) skipped: they do not meet the release's requirements"))
    return Group(*lines)


def show(r: dict[str, Any]) -> None:
    console.print(render(r))
