"""`edgeship profiles list|show`: the device profiles models are fitted to."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from edgeship.cli.common import JsonOpt, WorkspaceOpt
from edgeship.cli.output import console, human_size, print_json
from edgeship.errors import WorkspaceError
from edgeship.optimize.profiles import Profile, load_profiles, pick_profiles
from edgeship.workspace import Workspace

app = typer.Typer(help="Device profiles: RAM, arch, accelerator, TOPS, usable memory.", no_args_is_help=True)


def workspace_profiles(workspace: Path | None) -> dict[str, Profile]:
    """Packaged profiles plus the workspace's own; without a workspace, the packaged ones."""
    try:
        root: Path | None = Workspace.find(workspace).root
    except WorkspaceError:
        if workspace is not None:
            raise
        root = None
    return load_profiles(root)


@app.command("list")
def list_profiles(workspace: Path | None = WorkspaceOpt, json_out: bool = JsonOpt) -> None:
    """List every profile (packaged, then the workspace's profiles.yaml)."""
    profiles = list(workspace_profiles(workspace).values())
    if json_out:
        print_json([p.to_json() for p in profiles])
        return
    table = Table("NAME", "DEVICE", "RAM", "USABLE", "ARCH", "ACCELERATOR", "TOPS", box=None)
    for p in profiles:
        table.add_row(
            p.name, p.title, human_size(p.ram), human_size(p.usable_bytes), p.arch, p.accelerator or "-", f"{p.tops:g}" if p.tops else "-"
        )
    console.print(table)


@app.command("show")
def show(name: str = typer.Argument(..., help="Profile name, e.g. pi5-8gb."), workspace: Path | None = WorkspaceOpt, json_out: bool = JsonOpt) -> None:
    """Show one profile."""
    [p] = pick_profiles(workspace_profiles(workspace), [name])
    if json_out:
        print_json(p.to_json())
        return
    console.print(f"[bold]{p.name}[/]  {p.title}")
    console.print(f"  RAM          {human_size(p.ram)} ({p.usable:.0%} usable by a model: {human_size(p.usable_bytes)})")
    console.print(f"  arch         {p.arch}")
    console.print(f"  accelerator  {p.accelerator or 'none'}" + (f", {p.tops:g} TOPS" if p.tops else ""))
    if p.notes:
        console.print(f"  notes        {p.notes}")
    console.print(f"  defined in   {p.source}")
