"""`edgeship certs init`: a private CA and server certificate for HTTPS."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse

import typer

from edgeship.cli.common import JsonOpt
from edgeship.cli.output import console, print_json
from edgeship.errors import WorkspaceError
from edgeship.server.tls import init_certs
from edgeship.workspace import Workspace

app = typer.Typer(help="TLS certificates for the update server.", no_args_is_help=True)

CA_IN_WORKSPACE = "server-ca.pem"


@app.command("init")
def init(
    data_dir: Path = typer.Option(..., "--data-dir", envvar="EDGESHIP_DATA_DIR", help="The server's data dir; files go to DATA_DIR/tls/."),
    name: list[str] = typer.Option(["localhost", "127.0.0.1"], "--name", help="DNS name or IP address the server is reached at (repeatable)."),
    days: int = typer.Option(825, "--days", min=1, help="Validity of the server certificate."),
    force: bool = typer.Option(False, "--force", help="Replace an existing CA."),
    workspace: Path | None = typer.Option(None, "--workspace", "-w", help="Also pin the CA in this workspace and switch its server URL to https."),
    json_out: bool = JsonOpt,
) -> None:
    """Create DATA_DIR/tls/{ca,server}.pem; start the server with --tls-cert/--tls-key, give clients ca.pem."""
    files = init_certs(data_dir, name, days, force)
    pinned = None
    try:
        ws = Workspace.find(workspace)
    except WorkspaceError:
        ws = None
    if ws is not None:
        shutil.copyfile(files.ca, ws.root / CA_IN_WORKSPACE)
        ws.config.server_ca = CA_IN_WORKSPACE
        if ws.config.server_url:
            ws.config.server_url = urlparse(ws.config.server_url)._replace(scheme="https").geturl()
        ws.save_config()
        pinned = str(ws.root / CA_IN_WORKSPACE)
    if json_out:
        print_json({"ca": str(files.ca), "cert": str(files.cert), "key": str(files.key), "pinned_in_workspace": pinned})
        return
    console.print(f"[green]created[/] CA {files.ca} and server certificate for {', '.join(name)}")
    console.print(f"serve with: edgeship server --data-dir {data_dir} --tls-cert {files.cert} --tls-key {files.key}")
    if pinned:
        console.print(f"pinned the CA in the workspace ({pinned})")
