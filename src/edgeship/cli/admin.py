"""`edgeship admin`: operator credentials for the update server."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeship.cli.common import JsonOpt, WorkspaceOpt
from edgeship.cli.output import console, print_json
from edgeship.cli.remote import CaOpt, ServerOpt, TokenOpt, operator_client

app = typer.Typer(help="Operator credentials for the update server.", no_args_is_help=True)
token_app = typer.Typer(help="Admin tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    name: str = typer.Option("", "--name", help="Who or what the token is for (shown in logs)."),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
    ca: Path | None = CaOpt,
    workspace: Path | None = WorkspaceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Create another admin token (e.g. for CI or a second operator); shown once."""
    with operator_client(server, token, ca, workspace) as client:
        result = client.create_admin_token(name)
    if json_out:
        print_json(result)
        return
    console.print(f"[green]created[/] admin token {result['id']} (shown once)")
    console.print(result["token"], soft_wrap=True)
