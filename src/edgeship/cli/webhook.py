"""`edgeship webhook`: URLs the server POSTs rollout state changes to, signed with a shared secret."""

from __future__ import annotations

import typer
from rich.table import Table

from edgeship.cli.common import JsonOpt
from edgeship.cli.output import console
from edgeship.cli.remote import emit, operator_command
from edgeship.client import OperatorClient

app = typer.Typer(help="Webhooks: rollout paused, aborted or completed, POSTed with an HMAC-SHA256 signature.", no_args_is_help=True)


@operator_command(app, "add")
def add(
    client: OperatorClient,
    url: str = typer.Argument(..., help="Where to POST (http or https)."),
    secret: str = typer.Option(..., "--secret", envvar="EDGESHIP_WEBHOOK_SECRET", help="Shared secret (16+ characters) the receiver checks the signature with."),
    json_out: bool = JsonOpt,
) -> None:
    """Register a webhook; each delivery carries X-Edgeship-Signature: sha256=HMAC(secret, body)."""
    emit(client.add_webhook(url, secret), json_out, lambda r: console.print(f"[green]added[/] webhook {r['id']} → {r['url']}"))


def _table(hooks: list[dict]) -> None:
    if not hooks:
        console.print("no webhooks; add one with `edgeship webhook add URL --secret S`")
        return
    table = Table("WEBHOOK", "URL", "CREATED", box=None)
    for h in hooks:
        table.add_row(h["id"], h["url"], h["created_at"][:19])
    console.print(table)


@operator_command(app, "list")
def list_hooks(client: OperatorClient, json_out: bool = JsonOpt) -> None:
    """Registered webhooks (secrets are never shown)."""
    emit(client.webhooks(), json_out, _table)


@operator_command(app, "remove")
def remove(client: OperatorClient, webhook_id: str = typer.Argument(..., help="Webhook ID (whk_…)."), json_out: bool = JsonOpt) -> None:
    """Remove a webhook and drop its undelivered notifications."""
    emit(client.remove_webhook(webhook_id), json_out, lambda r: console.print(f"[green]removed[/] webhook {r['id']}"))
