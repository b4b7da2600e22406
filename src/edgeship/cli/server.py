"""`edgeship server`: run the update server; `edgeship server init`: set up its data dir."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Optional

import typer

from edgeship.cli.common import JsonOpt, WorkspaceOpt, open_workspace
from edgeship.cli.output import console, print_json
from edgeship.cli.remote import emit, operator_command, sync_to_server
from edgeship.client import OperatorClient
from edgeship.server.settings import ServerSettings

app = typer.Typer(help="Run the update server, or set up its data dir (`edgeship server init`).")


def _flag(name: str, field: Any) -> inspect.Parameter:
    """One CLI option per settings field, so flags and ServerSettings cannot drift apart."""
    annotation = field.annotation
    base = {bool: bool, int: int, float: float, str: str}.get(annotation, Path)
    flag = "--" + name.replace("_", "-")
    decls = [f"{flag}/--no-{name.replace('_', '-')}"] if base is bool else [flag]
    default = field.default if field.default is not None else "none"
    option = typer.Option(
        None, *decls, help=f"{field.description} [env: {ServerSettings.env_name(name)}; default: {default}]", show_default=False
    )
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=Optional[base])  # noqa: UP045 - typer needs a runtime type


def serve(ctx: typer.Context, **flags: Any) -> None:
    """Serve devices and operators over HTTP(S) (every flag is also an EDGESHIP_* variable)."""
    if ctx.invoked_subcommand is not None:
        return
    from edgeship.server.run import serve as run_server

    run_server(ServerSettings.load(flags))


serve.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
    + [_flag(name, field) for name, field in ServerSettings.model_fields.items()]
)
app.callback(invoke_without_command=True)(serve)


@app.command("init")
def init(
    data_dir: Path = typer.Option(..., "--data-dir", envvar="EDGESHIP_DATA_DIR", help="The server's data dir (created)."),
    database_url: str = typer.Option("", "--database-url", envvar="EDGESHIP_DATABASE_URL", help="As for `edgeship server` (default: SQLite in the data dir)."),
    url: str = typer.Option("", "--url", help="The URL operators reach the server at, saved in the workspace (default: http://127.0.0.1:8443; `edgeship certs init` switches it to https)."),
    blob_store: str = typer.Option("", "--blob-store", envvar="EDGESHIP_BLOB_STORE", help="As for `edgeship server`: s3://bucket/prefix copies the workspace's files into the bucket (skipping what is there)."),
    workspace: Path | None = WorkspaceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Copy the workspace's signed metadata into the database, its files into the blob store
    and the online (snapshot, timestamp) keys into DATA_DIR; create an admin token and save
    the server URL and token in the workspace. Run it on every instance's host: when the
    database already holds the metadata, it installs the keys and copies what the blob store
    lacks. Run it again to finish one cut short."""
    from edgeship.server.bootstrap import init_data_dir

    ws = open_workspace(workspace)
    settings = ServerSettings.load({"data_dir": data_dir, "database_url": database_url, "blob_store": blob_store})
    cred = init_data_dir(settings, ws, report=None if json_out else lambda line: console.print(line, markup=False, highlight=False))
    ws.config.server_url = url or f"http://127.0.0.1:{settings.port}"
    ws.config.server_admin_token = cred.token
    ws.save_config()
    if json_out:
        print_json({"data_dir": str(data_dir), "url": ws.config.server_url, "admin_token_id": cred.id})
        return
    console.print(f"[green]initialised[/] server data dir {data_dir}")
    console.print(f"  admin token {cred.id} saved in {ws.root / 'edgeship.toml'} with server url {ws.config.server_url}")
    console.print(f"next: edgeship server --data-dir {data_dir}")


@operator_command(app, "sync")
def sync(client: OperatorClient, workspace: Path | None = WorkspaceOpt, json_out: bool = JsonOpt) -> None:
    """Publish the workspace's signed releases to the server: uploads what it lacks (resuming
    cut-off uploads), then the targets; the server signs a new snapshot and timestamp."""

    def human(r: dict) -> None:
        console.print(
            f"[green]published[/] targets v{r['targets_version']} to {r['url']}: "
            f"{len(r['uploaded'])} file(s) uploaded, {r['skipped']} already there"
        )

    emit(sync_to_server(open_workspace(workspace), client), json_out, human)
