"""`edgeship device`: enrollment tokens and the enrolled fleet."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from edgeship.cli.common import JsonOpt, WorkspaceOpt
from edgeship.cli.output import console, print_json
from edgeship.cli.remote import CaOpt, ServerOpt, TokenOpt, operator_client
from edgeship.server.schemas import parse_tag
from edgeship.units import parse_duration

app = typer.Typer(help="Enroll devices and look after the fleet.", no_args_is_help=True)
token_app = typer.Typer(help="Enrollment tokens: what a new device presents once to join.", no_args_is_help=True)
app.add_typer(token_app, name="token")


def parse_tags(text: str | None) -> dict[str, str]:
    """"k=v,k2=v2" -> {"k": "v", "k2": "v2"}."""
    return dict(parse_tag(item.strip()) for item in (text or "").split(",") if item.strip())


@token_app.command("create")
def token_create(
    tags: str | None = typer.Option(None, "--tags", help="Tags every device enrolled with it gets, e.g. site=berlin,ring=pilot."),
    uses: int | None = typer.Option(None, "--uses", min=1, help="How many devices may enroll with it (default: unlimited)."),
    expires: str | None = typer.Option(None, "--expires", help="Lifetime, e.g. 1h, 7d (default: until revoked)."),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
    ca: Path | None = CaOpt,
    workspace: Path | None = WorkspaceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Create an enrollment token; its secret is shown once."""
    expires_s = int(parse_duration(expires)) if expires else None
    with operator_client(server, token, ca, workspace) as client:
        result = client.create_enroll_token(parse_tags(tags), uses, expires_s)
    if json_out:
        print_json(result)
        return
    console.print(f"[green]created[/] enrollment token {result['id']}  (shown once; give it to the device agent)")
    console.print(result["token"], soft_wrap=True)


@token_app.command("revoke")
def token_revoke(
    token_id: str = typer.Argument(..., help="The token's ID (enr_…)."),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
    ca: Path | None = CaOpt,
    workspace: Path | None = WorkspaceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Revoke an enrollment token: no device can enroll with it any more (enrolled ones stay)."""
    with operator_client(server, token, ca, workspace) as client:
        result = client.revoke_enroll_token(token_id)
    if json_out:
        print_json(result)
        return
    console.print(f"[green]revoked[/] {result['id']} (used by {result['uses']} device(s))")


@app.command("list")
def list_devices(
    tag: str | None = typer.Option(None, "--tag", help="Only devices with this tag (k=v)."),
    all_devices: bool = typer.Option(False, "--all", help="Include decommissioned devices."),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
    ca: Path | None = CaOpt,
    workspace: Path | None = WorkspaceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """List enrolled devices."""
    with operator_client(server, token, ca, workspace) as client:
        devices = list(client.devices(tag, all_devices))
    if json_out:
        print_json(devices)
        return
    if not devices:
        console.print("no devices yet; enroll one with a token from `edgeship device token create`")
        return
    table = Table("DEVICE", "STATE", "RELEASE", "LAST SEEN", "TAGS", box=None)
    for d in devices:
        current = d["current"] or {}
        release = f"{current['name']}@{current['version']}" if current else "-"
        tags = ",".join(f"{k}={v}" for k, v in sorted(d["tags"].items()))
        table.add_row(d["id"], d["state"], release, d["last_seen_at"] or "never", tags)
    console.print(table)


@app.command("show")
def show(
    device_id: str = typer.Argument(..., help="Device ID (dev_…)."),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
    ca: Path | None = CaOpt,
    workspace: Path | None = WorkspaceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Show one device: facts, tags, state, releases and its assignment."""
    with operator_client(server, token, ca, workspace) as client:
        device = client.device(device_id)
    if json_out:
        print_json(device)
        return
    console.print(f"[bold]{device['id']}[/]  {device['state']}" + ("  [red]decommissioned[/]" if device["decommissioned_at"] else ""))
    for label in ("current", "previous", "assignment"):
        ref = device[label]
        console.print(f"  {label:<11} {ref['name'] + '@' + ref['version'] if ref else '-'}")
    console.print(f"  tags        {', '.join(f'{k}={v}' for k, v in sorted(device['tags'].items())) or '-'}")
    console.print(f"  facts       {', '.join(f'{k}={v}' for k, v in sorted(device['facts'].items())) or '-'}")
    console.print(f"  enrolled    {device['enrolled_at']}   last seen {device['last_seen_at'] or 'never'}")


@app.command("decommission")
def decommission(
    device_id: str = typer.Argument(..., help="Device ID (dev_…)."),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
    ca: Path | None = CaOpt,
    workspace: Path | None = WorkspaceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Decommission a device: its credential stops working; its history stays."""
    with operator_client(server, token, ca, workspace) as client:
        device = client.decommission(device_id)
    if json_out:
        print_json(device)
        return
    console.print(f"[green]decommissioned[/] {device['id']}")
