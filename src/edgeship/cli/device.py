"""`edgeship device`: enrollment tokens and the enrolled fleet."""

from __future__ import annotations

import typer
from rich.table import Table

from edgeship.cli.common import JsonOpt
from edgeship.cli.output import console
from edgeship.cli.remote import emit, operator_command
from edgeship.client import OperatorClient
from edgeship.server.schemas import parse_tag
from edgeship.units import parse_duration

app = typer.Typer(help="Enroll devices and look after the fleet.", no_args_is_help=True)
token_app = typer.Typer(help="Enrollment tokens: what a new device presents once to join.", no_args_is_help=True)
app.add_typer(token_app, name="token")

DeviceIdArg = typer.Argument(..., help="Device ID (dev_…).")


def parse_tags(text: str | None) -> dict[str, str]:
    """"k=v,k2=v2" -> {"k": "v", "k2": "v2"}."""
    return dict(parse_tag(item.strip()) for item in (text or "").split(",") if item.strip())


@operator_command(token_app, "create")
def token_create(
    client: OperatorClient,
    tags: str | None = typer.Option(None, "--tags", help="Tags every device enrolled with it gets, e.g. site=berlin,ring=pilot."),
    uses: int | None = typer.Option(None, "--uses", min=1, help="How many devices may enroll with it (default: unlimited)."),
    expires: str | None = typer.Option(None, "--expires", help="Lifetime, e.g. 1h, 7d (default: until revoked)."),
    json_out: bool = JsonOpt,
) -> None:
    """Create an enrollment token; its secret is shown once."""
    result = client.create_enroll_token(parse_tags(tags), uses, int(parse_duration(expires)) if expires else None)

    def human(r: dict) -> None:
        console.print(f"[green]created[/] enrollment token {r['id']}  (shown once; give it to the device agent)")
        console.print(r["token"], soft_wrap=True)

    emit(result, json_out, human)


@operator_command(token_app, "revoke")
def token_revoke(client: OperatorClient, token_id: str = typer.Argument(..., help="The token's ID (enr_…)."), json_out: bool = JsonOpt) -> None:
    """Revoke an enrollment token: no device can enroll with it any more (enrolled ones stay)."""
    emit(client.revoke_enroll_token(token_id), json_out, lambda r: console.print(f"[green]revoked[/] {r['id']} (used by {r['uses']} device(s))"))


def _table(devices: list[dict]) -> None:
    if not devices:
        console.print("no devices; enroll one with a token from `edgeship device token create`")
        return
    table = Table("DEVICE", "STATE", "RELEASE", "LAST SEEN", "TAGS", box=None)
    for d in devices:
        current = d["current"] or {}
        release = f"{current['name']}@{current['version']}" if current else "-"
        tags = ",".join(f"{k}={v}" for k, v in sorted(d["tags"].items()))
        table.add_row(d["id"], d["state"], release, d["last_seen_at"] or "never", tags)
    console.print(table)


@operator_command(app, "list")
def list_devices(
    client: OperatorClient,
    tag: str | None = typer.Option(None, "--tag", help="Only devices with this tag (k=v)."),
    all_devices: bool = typer.Option(False, "--all", help="Include decommissioned devices."),
    json_out: bool = JsonOpt,
) -> None:
    """List enrolled devices."""
    emit(list(client.devices(tag, all_devices)), json_out, _table)


def _show(device: dict) -> None:
    console.print(f"[bold]{device['id']}[/]  {device['state']}" + ("  [red]decommissioned[/]" if device["decommissioned_at"] else ""))
    for label in ("current", "previous", "assignment"):
        ref = device[label]
        console.print(f"  {label:<11} {ref['name'] + '@' + ref['version'] if ref else '-'}")
    console.print(f"  tags        {', '.join(f'{k}={v}' for k, v in sorted(device['tags'].items())) or '-'}")
    console.print(f"  facts       {', '.join(f'{k}={v}' for k, v in sorted(device['facts'].items())) or '-'}")
    console.print(f"  enrolled    {device['enrolled_at']}   last seen {device['last_seen_at'] or 'never'}")


@operator_command(app, "show")
def show(client: OperatorClient, device_id: str = DeviceIdArg, json_out: bool = JsonOpt) -> None:
    """Show one device: facts, tags, state, releases and its assignment."""
    emit(client.device(device_id), json_out, _show)


@operator_command(app, "decommission")
def decommission(client: OperatorClient, device_id: str = DeviceIdArg, json_out: bool = JsonOpt) -> None:
    """Decommission a device: its credential stops working; its history stays."""
    emit(client.decommission(device_id), json_out, lambda d: console.print(f"[green]decommissioned[/] {d['id']}"))
