"""`edgeship keys rotate|list`: manage the TUF role keys of a workspace."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from edgeship.cli.common import (
    JsonOpt,
    WorkspaceOpt,
    open_workspace,
    passphrase_from_env_or_prompt,
)
from edgeship.cli.output import console, print_json
from edgeship.errors import UsageError
from edgeship.trust import keys as keyfiles
from edgeship.trust.repository import ROLES

app = typer.Typer(help="Manage the signing keys of the TUF roles.", no_args_is_help=True)


@app.command("list")
def list_keys(workspace: Path | None = WorkspaceOpt, json_out: bool = JsonOpt) -> None:
    """Show which key each role trusts, and whether this workspace holds it."""
    ws = open_workspace(workspace)
    root = ws.repository().root().signed
    rows = [
        {"role": role, "keyids": list(root.roles[role].keyids), "threshold": root.roles[role].threshold, "present": ws.keyring.has(role)}
        for role in ROLES
    ]
    if json_out:
        print_json({"root_version": root.version, "roles": rows})
        return
    table = Table("ROLE", "KEY ID", "THRESHOLD", "KEY FILE", box=None)
    for r in rows:
        table.add_row(r["role"], ", ".join(k[:16] for k in r["keyids"]), str(r["threshold"]), "present" if r["present"] else "absent")
    console.print(f"root version {root.version}")
    console.print(table)


@app.command("rotate")
def rotate(
    role: str = typer.Option(..., "--role", help="Role whose key to replace: root, targets, snapshot or timestamp."),
    workspace: Path | None = WorkspaceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Replace a role's key: a new root version trusts the new key and no longer the old one.

    Clients that trust the old root follow the rotation (the new root is signed by the old root key too).
    The retired key file moves to keys/retired/.
    """
    ws = open_workspace(workspace)
    passphrase = None
    if ws.config.encrypted_keys:
        # The new key is encrypted like the others; never silently write it in the clear.
        passphrase = passphrase_from_env_or_prompt(ws.keyring.path(role))
        if passphrase is None:
            raise UsageError("this workspace's keys are encrypted", hint=f"set {keyfiles.PASSPHRASE_ENV} or run in a terminal")
    repo = ws.repository()
    keyid = repo.rotate(role, passphrase)
    version = repo.root().signed.version
    if json_out:
        print_json({"role": role, "keyid": keyid, "root_version": version})
        return
    console.print(f"[green]rotated[/] {role} key → {keyid[:16]}…  (root version {version})")
