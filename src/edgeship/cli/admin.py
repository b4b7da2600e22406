"""`edgeship admin`: operator credentials for the update server."""

from __future__ import annotations

import typer

from edgeship.cli.common import JsonOpt
from edgeship.cli.output import console
from edgeship.cli.remote import emit, operator_command
from edgeship.client import OperatorClient

app = typer.Typer(help="Operator credentials for the update server.", no_args_is_help=True)
token_app = typer.Typer(help="Admin tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@operator_command(token_app, "create")
def token_create(
    client: OperatorClient,
    name: str = typer.Option("", "--name", help="Who or what the token is for (shown in logs)."),
    json_out: bool = JsonOpt,
) -> None:
    """Create another admin token (e.g. for CI or a second operator); shown once."""

    def human(r: dict) -> None:
        console.print(f"[green]created[/] admin token {r['id']} (shown once)")
        console.print(r["token"], soft_wrap=True)

    emit(client.create_admin_token(name), json_out, human)
