"""Options and helpers shared by command groups."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

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
    from edgeship.trust import keys as keyfiles  # signing libraries only when a key is unlocked

    secret = keyfiles.passphrase_from_env(path)
    if secret is None and sys.stdin.isatty():
        secret = typer.prompt(f"Passphrase for {path.name}", hide_input=True).encode()
    return secret


def open_workspace(path: Path | None) -> Workspace:
    return Workspace.find(path, passphrase_from_env_or_prompt)

# A rollout plan, as `edgeship rollout start` and `edgeship simulate` both take it.
StagesOpt = typer.Option("1,10,50,100", "--stages", help="Stage percentages of the targeted devices.")
BakeOpt = typer.Option("30m", "--bake", help="How long the pilot and each stage are watched once installed.")
MaxFailureOpt = typer.Option("2%", "--max-failure", help="Failure budget: share of a stage's devices that may fail.")
PilotOpt = typer.Option("ring=pilot", "--pilot", help="Pilot group that goes first and must all succeed ('' for none).")
WindowOpt = typer.Option(None, "--window", help="Maintenance window in device local time, e.g. 02:00-04:00.")
NoticeOpt = typer.Option(None, "--notice", help="Tell devices this long before they switch, e.g. 1h.")
OnFailOpt = typer.Option("pause", "--on-fail", help="Over budget: pause, or rollback (abort and order devices back).")
