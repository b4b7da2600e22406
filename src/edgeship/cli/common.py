"""Options and helpers shared by command groups."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from edgeship.trust import keys as keyfiles
from edgeship.workspace import Workspace

WorkspaceOpt = typer.Option(
    None,
    "--workspace",
    "-w",
    help="Operator workspace (default: $EDGESHIP_WORKSPACE, else the nearest edgeship.toml above the current directory).",
    show_default=False,
)
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON.")


def passphrase_from_env_or_prompt(path: Path) -> bytes | None:
    """Unlock an encrypted key from $EDGESHIP_KEY_PASSPHRASE, or ask when a person is there."""
    secret = keyfiles.passphrase_from_env(path)
    if secret is None and sys.stdin.isatty():
        secret = typer.prompt(f"Passphrase for {path.name}", hide_input=True).encode()
    return secret


def open_workspace(path: Path | None) -> Workspace:
    ws = Workspace.find(path)
    return Workspace(ws.root, ws.config, passphrase=passphrase_from_env_or_prompt)
