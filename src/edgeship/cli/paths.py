"""Every path a command is given is made absolute as the command line is parsed.

A relative path means "from where I ran the command", but commands hand paths to child
processes started elsewhere (the agent's health trial runs in the release's directory), to
files read later, and to servers with their own working directory: made absolute once at the
start, a path means the same thing everywhere. Absolute, not resolved: a symlink keeps the
name it was given (a release's file is named after the file pushed, links such as `current`
stay links).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any


def absolute(value: Any, *, text: bool = False) -> Any:
    """``value`` with every path in it (alone, or in a list or tuple) made absolute; with ``text``,
    strings are paths too (and stay strings)."""
    if isinstance(value, PurePath):
        return Path(value).absolute()
    if text and isinstance(value, str):
        return str(Path(value).absolute())
    if isinstance(value, (list, tuple)):
        return type(value)(absolute(v, text=text) for v in value)
    return value


def make_paths_absolute(command: Any) -> None:
    """Make a click command, and every subcommand under it, turn the paths it parses absolute.

    Defaults count too. Newer typer parses a path into a ``Path``; older typer parses it as a
    string with click's Path type and makes the ``Path`` afterwards: both are caught.
    """
    for param in command.params:
        param.callback = _absolute_first(param.callback, text=_click_path(getattr(param, "type", None)))
    for sub in getattr(command, "commands", {}).values():
        make_paths_absolute(sub)


def _click_path(param_type: Any) -> bool:
    return all(hasattr(param_type, a) for a in ("file_okay", "dir_okay", "resolve_path"))


def _absolute_first(callback: Callable[..., Any] | None, *, text: bool) -> Callable[..., Any]:
    def callback_on_absolute(ctx: Any, param: Any, value: Any) -> Any:
        value = absolute(value, text=text)  # before the command's own callback, which then sees it too
        return callback(ctx, param, value) if callback is not None else value

    return callback_on_absolute
