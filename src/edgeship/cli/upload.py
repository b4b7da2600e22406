"""After a command signs releases into the workspace (`release push`, `optimize --push`): upload
them to --server, else to the workspace's server (edgeship.toml), unless --no-upload."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from edgeship.cli.output import console
from edgeship.cli.remote import operator_client, sync_to_server
from edgeship.errors import EdgeshipError, ServerError
from edgeship.workspace import Workspace

UploadServerOpt = typer.Option(
    None,
    "--server",
    envvar="EDGESHIP_SERVER",
    help="Upload to this update server (default: the server url in edgeship.toml; resumable, `edgeship server sync` finishes a cut-off upload).",
    show_default=False,
)
NoUploadOpt = typer.Option(False, "--no-upload", help="Only sign into the workspace (even with --server or $EDGESHIP_SERVER); `edgeship server sync` uploads later.")


def upload_target(server: str | None, configured: str, no_upload: bool) -> str | None:
    """The server to upload to: --server, else the workspace's; None with --no-upload (which
    wins, so a shell that exports EDGESHIP_SERVER can still sign only) or when none is named."""
    if no_upload:
        return None
    return server or configured or None


class NotUploaded(StrEnum):
    """Why signed releases were not uploaded; the value is what the console and --json say."""

    ASKED = "--no-upload"
    NO_SERVER = "edgeship.toml names no server"


@dataclass(frozen=True)
class Upload:
    server: dict[str, Any] | None  # what the server reported, once uploaded
    not_uploaded: NotUploaded | None  # why not, when not

    def to_json(self) -> dict[str, Any]:
        return {"server": self.server, "not_uploaded": self.not_uploaded.value if self.not_uploaded else None}

    def say(self) -> None:
        if self.server is not None:
            console.print(f"uploaded to {self.server['url']}: {len(self.server['uploaded'])} file(s), {self.server['skipped']} already there")
            return
        console.print(f"[yellow]not uploaded[/] ({self.not_uploaded}): devices cannot get it yet; `edgeship server sync` uploads it"
                      + ("" if self.not_uploaded is NotUploaded.ASKED else " once `edgeship server init` (or --server URL) names a server"))


def upload_signed(ws: Workspace, server: str | None, no_upload: bool, token: str | None, ca: Path | None, kept: str) -> Upload:
    """Upload the workspace's signed repository where ``upload_target`` says. ``kept`` says
    what is safe already (signed, written) should the upload fail, so nobody signs it again."""
    target = upload_target(server, ws.config.server_url, no_upload)
    if target is None:
        return Upload(None, NotUploaded.ASKED if no_upload else NotUploaded.NO_SERVER)
    try:
        with operator_client(target, token, ca, ws.root) as client:
            return Upload(sync_to_server(ws, client), None)
    except EdgeshipError as exc:
        raise ServerError(
            f"{kept}, but the upload to {target} failed: {exc.message}",
            hint=(f"{exc.hint}; then " if exc.hint else "") + f"`edgeship server sync --server {target}` uploads it (with the same --token/--ca)",
        ) from exc
