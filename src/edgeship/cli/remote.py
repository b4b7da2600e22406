"""Options and the client shared by commands that talk to the update server."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeship.cli.output import console, human_size
from edgeship.client import OperatorClient, push_repository
from edgeship.errors import WorkspaceError
from edgeship.workspace import Workspace

ServerOpt = typer.Option(
    None, "--server", envvar="EDGESHIP_SERVER", help="Server URL (default: the workspace's [server] url).", show_default=False
)
TokenOpt = typer.Option(
    None, "--token", envvar="EDGESHIP_ADMIN_TOKEN", help="Admin token (default: the workspace's [server] admin_token).", show_default=False
)
CaOpt = typer.Option(
    None, "--ca", envvar="EDGESHIP_CA", help="CA certificate to pin for HTTPS (default: the workspace's [server] ca).", show_default=False
)


def operator_client(server: str | None, token: str | None, ca: Path | None, workspace: Path | None) -> OperatorClient:
    """A client from flags/env, filling what is missing from the workspace's edgeship.toml."""
    if not (server and token):
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


def sync_to_server(ws: Workspace, server: str | None, token: str | None, ca: Path | None) -> dict:
    """Upload what the server lacks of the workspace's signed repository, with a progress line."""
    with operator_client(server, token, ca, ws.root) as client, console.status(f"publishing to {client.url}…") as status:
        report = push_repository(
            client, ws.repository(), lambda path, done, total: status.update(f"uploading {path} {human_size(done)}/{human_size(total)}")
        )
    return {"url": client.url, "uploaded": report.uploaded, "skipped": report.skipped, **report.server}
