"""The root command group, whose subcommands are imported only when one of them runs.

A command module pulls in what its command needs (FastAPI, SQLAlchemy, numpy, …); importing
all of them cost seconds and ~100 MB before even `--help` could print. The root group holds a
table of command name -> module and one-line help instead: `--help` lists the table, and
running a command imports just its module.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from edgeship.cli.paths import make_paths_absolute


@dataclass(frozen=True)
class Lazy:
    """A command in the root table: the module that defines it and its one-line help.

    The module either exposes ``app`` (a ``typer.Typer`` group, added under the command's name)
    or ``register(app)``, which adds its command(s) to the app it is given.
    """

    module: str
    help: str


def load(name: str, entry: Lazy) -> Any:
    """The real click command ``name``, as registering its module on the root app makes it, with
    every path it takes made absolute as it is parsed."""
    # __import__ rather than importlib.import_module, which `python -X importtime` cannot see.
    __import__(entry.module)
    module = sys.modules[entry.module]
    scratch = typer.Typer()
    if hasattr(module, "register"):
        module.register(scratch)
    else:
        scratch.add_typer(module.app, name=name)
    # A callback makes typer build a group even when the module added a single command.
    scratch.callback()(lambda: None)
    command = typer.main.get_group(scratch).commands[name]
    make_paths_absolute(command)
    return command


class LazyGroup(TyperGroup):
    """A typer group whose subcommands come from ``table`` (set by a subclass), loaded on use."""

    table: dict[str, Lazy] = {}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *self.table]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        entry = self.table.get(cmd_name)
        if entry is None:
            return super().get_command(ctx, cmd_name)
        if self._listing:
            # Help only shows the name and one line: a stand-in spares importing the module.
            return TyperCommand(name=cmd_name, short_help=entry.help, help=entry.help)
        return load(cmd_name, entry)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False
