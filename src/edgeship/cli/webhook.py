"""`edgeship webhook`: URLs the server POSTs rollout state changes to, signed with a shared secret."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from edgeship.cli.common import JsonOpt, WorkspaceOpt
from edgeship.cli.output import console, print_json
from edgeship.cli.remote import CaOpt, ServerOpt, TokenOpt, operator_client

app = typer.Typer(help="Webhooks: rollout paused, aborted or completed, POSTed with an HMAC-SHA256 signature.", no_args_is_help=True)


@app.command("add")
def add(
    url: str = typer.Argument(..., help="Where to POST (http or https)."),
    secret: str = typer.Option(..., "--secret", envvar="EDGESHIP_WEBHOOK_SECRET", help="Shared secret (16+ characters) the receiver checks the signature with."),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
    ca: Path | None = CaOpt,
    workspace: Path | None = WorkspaceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Register a webhook; each delivery carries X-Edgeship-Signature: sha256=HMAC(secret, body)."""
    with operator_client(server, token, ca, workspace) as client:
        result = client.add_webhook(url, secret)
    if json_out:
        print_json(result)
        return
    console.print(f"[green]added[/] webhook {result['id']} → {result['url']}")


@app.command("list")
def list_hooks(
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
    ca: Path | None = CaOpt,
    workspace: Path | None = WorkspaceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Registered webhooks (secrets are never shown)."""
    with operator_client(server, token, ca, workspace) as client:
        result = client.webhooks()
    if json_out:
        print_json(result)
        return
    table = Table("WEBHOOK", "URL", "CREATED", box=None)
    for h in result:
        table.add_row(h["id"], h["url"], h["created_at"][:19])
    console.print(table if result else "no webhooks; add one with `edgeship webhook add URL --secret S`")


@app.command("remove")
def remove(
    webhook_id: str = typer.Argument(..., help="Webhook ID (whk_…)."),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
    ca: Path | None = CaOpt,
    workspace: Path | None = WorkspaceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Remove a webhook and drop its undelivered notifications."""
    with operator_client(server, token, ca, workspace) as client:
        result = client.remove_webhook(webhook_id)
    if json_out:
        print_json(result)
        return
    console.print(f"[green]removed[/] webhook {result['id']}")
