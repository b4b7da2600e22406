"""`edgeship init`: a new operator workspace with keys and signed metadata."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from edgeship.cli.output import console, print_json
from edgeship.errors import UsageError
from edgeship.trust import keys as keyfiles
from edgeship.workspace import Workspace


def init(
    directory: Path = typer.Argument(Path("."), help="Where to create the workspace (created if missing)."),
    encrypt: bool = typer.Option(
        None,
        "--encrypt/--no-encrypt",
        help=f"Encrypt the private keys with a passphrase (from ${keyfiles.PASSPHRASE_ENV}, else asked). "
        f"Default: encrypt when ${keyfiles.PASSPHRASE_ENV} is set.",
        show_default=False,
    ),
    json_out: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Create an operator workspace: edgeship.toml, Ed25519 keys for the four TUF roles, signed metadata.

    The root and targets keys stay here, offline; only snapshot and timestamp keys may go to a server.
    """
    env_secret = keyfiles.passphrase_from_env(directory)
    if encrypt is None:
        encrypt = env_secret is not None
    passphrase = None
    if encrypt:
        passphrase = env_secret
        if passphrase is None:
            if not sys.stdin.isatty():
                raise UsageError("--encrypt needs a passphrase", hint=f"set {keyfiles.PASSPHRASE_ENV} or run in a terminal")
            passphrase = typer.prompt("Passphrase for the new keys", hide_input=True, confirmation_prompt=True).encode()
    ws = Workspace.init(directory, passphrase)
    root = ws.repository().root().signed
    keys = {role: root.roles[role].keyids[0] for role in ("root", "targets", "snapshot", "timestamp")}
    if json_out:
        print_json({"workspace": str(ws.root), "encrypted": encrypt, "keys": keys})
        return
    console.print(f"[green]created[/] workspace {ws.root}")
    for role, keyid in keys.items():
        console.print(f"  {role:<9} key {keyid[:16]}…  keys/{role}.pem")
    console.print(f"  keys are {'encrypted' if encrypt else '[yellow]not encrypted[/]'}; back up keys/root.pem offline")
    console.print("next: edgeship release push NAME --version 1.0.0 --component model/gguf=./model.gguf")


def register(app: typer.Typer) -> None:
    app.command("init")(init)
