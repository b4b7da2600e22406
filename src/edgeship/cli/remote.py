"""Options and the client shared by commands that talk to the update server."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer

from edgeship.cli.common import WorkspaceOpt
from edgeship.cli.output import console, human_size, print_json
from edgeship.client import OperatorClient, push_repository
from edgeship.errors import WorkspaceError
from edgeship.workspace import Workspace

ServerOpt = typer.Option(
    None, "--server", envvar="EDGESHIP_SERVER", help="Server URL (default: the server url in the workspace's edgeship.toml).", show_default=False
)
TokenOpt = typer.Option(
    None, "--token", envvar="EDGESHIP_ADMIN_TOKEN", help="Admin token (default: the admin token in the workspace's edgeship.toml).", show_default=False
)
CaOpt = typer.Option(
    None, "--ca", envvar="EDGESHIP_CA", help="CA certificate to pin for HTTPS (default: the CA named in the workspace's edgeship.toml).", show_default=False
)


_CONNECTION = ("server", "token", "ca", "workspace")


def operator_command(app: typer.Typer, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a command that talks to the server: adds --server/--token/--ca/--workspace and
    passes the command an open ``client`` (and closes it afterwards). A command that declares
    ``workspace`` itself gets it too."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn)
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in sig.parameters.values() if p.name != "client"]
        wants = {p.name for p in own}
        options = {"server": ServerOpt, "token": TokenOpt, "ca": CaOpt, "workspace": WorkspaceOpt}
        types = {"server": Optional[str], "token": Optional[str], "ca": Optional[Path], "workspace": Optional[Path]}  # noqa: UP045 - typer needs runtime types
        extra = [
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=options[n], annotation=types[n]) for n in _CONNECTION if n not in wants
        ]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            connection = {n: kwargs[n] if n in wants else kwargs.pop(n) for n in _CONNECTION}
            with operator_client(**connection) as client:
                return fn(client=client, **kwargs)

        command.__signature__ = sig.replace(parameters=own + extra)  # type: ignore[attr-defined]
        return app.command(name)(command)

    return register


def emit(result: Any, json_out: bool, human: Callable[[Any], None]) -> None:
    """Print a command's result as JSON for scripts, or as ``human`` says for people."""
    if json_out:
        print_json(result)
    else:
        human(result)


def operator_client(server: str | None, token: str | None, ca: Path | None, workspace: Path | None) -> OperatorClient:
    """A client from flags/env, filling what is missing from the workspace's edgeship.toml."""
    if not (server and token and ca):
        try:
            ws = Workspace.find(workspace)
        except WorkspaceError:
            ws = None
        if ws is not None:
            server = server or ws.config.server_url
            token = token or ws.config.server_admin_token
            if ca is None and ws.config.server_ca:
                ca = ws.root / ws.config.server_ca
    return OperatorClient(server or "", token or "", ca=str(ca) if ca else None)


def sync_to_server(ws: Workspace, client: OperatorClient) -> dict:
    """Upload what the server lacks of the workspace's signed repository, with a progress line."""
    with console.status(f"publishing to {client.url}…") as status:
        report = push_repository(
            client, ws.repository(), lambda path, done, total: status.update(f"uploading {path} {human_size(done)}/{human_size(total)}")
        )
    return {"url": client.url, "uploaded": report.uploaded, "skipped": report.skipped, **report.server}
