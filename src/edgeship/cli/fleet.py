"""`edgeship assign` and `edgeship events`: tell devices what to run, watch what they report."""

from __future__ import annotations

import json
import time

import typer

from edgeship.cli.common import JsonOpt
from edgeship.cli.output import console, human_size
from edgeship.cli.remote import emit, operator_command
from edgeship.client import OperatorClient
from edgeship.errors import UsageError


def assign(
    client: OperatorClient,
    release: str = typer.Argument(..., help="NAME@VERSION, pushed to the server."),
    tag: str | None = typer.Option(None, "--tag", help="Every device with this tag (k=v)."),
    device: str | None = typer.Option(None, "--device", help="One device (dev_…)."),
    rollback: bool = typer.Option(False, "--rollback", help="Allow devices to go back to this (older) version, if it is the signed rollback_to of what they run."),
    json_out: bool = JsonOpt,
) -> None:
    """Assign a release to a tag or a device; devices pick it up at their next check-in."""
    if (tag is None) == (device is None):
        raise UsageError("pass exactly one of --tag k=v or --device ID")
    result = client.assign(release, tag, device, rollback)
    emit(result, json_out, lambda r: console.print(f"[green]assigned[/] {r['release']} to {r['tag'] or r['device_id']}"))


def events(
    client: OperatorClient,
    device: str | None = typer.Option(None, "--device", help="Only this device's events."),
    after: int = typer.Option(0, "--after", min=0, help="Start after this sequence number."),
    limit: int = typer.Option(100, "--limit", min=1, max=1000, help="Most events to print (per poll with --follow)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events until interrupted."),
    interval: float = typer.Option(2.0, "--interval", min=0.1, help="Seconds between polls with --follow."),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """Print device events in the order the server stored them."""
    while True:
        page = client.events(device, after, limit)
        for e in page["events"]:
            if json_out:
                print(json.dumps(e, sort_keys=True), flush=True)
            else:
                detail = e["state"] or _detail(e)
                console.print(f"{e['seq']:>8} {e['time']} {e['device_id']} {e['type']:<9} {e['release'] or '-'} {detail}", soft_wrap=True)
        after = page["next_after"]
        if not follow:
            return
        time.sleep(interval)


def _detail(event: dict) -> str:
    """A download's bytes in words (fetched in that attempt, resumed from earlier ones); other data as JSON."""
    data = event["data"]
    if event["type"] == "download" and "bytes_fetched" in data:
        delta = f" (by delta: {', '.join(data['by_delta'])})" if data.get("by_delta") else ""
        return (f"fetched {human_size(data['bytes_fetched'])}, resumed {human_size(data['bytes_resumed'])}, "
                f"of {human_size(data['full_size'])}{delta}")
    return json.dumps(data, sort_keys=True)[:120]


def register(app: typer.Typer) -> None:
    operator_command(app, "assign")(assign)
    operator_command(app, "events")(events)
