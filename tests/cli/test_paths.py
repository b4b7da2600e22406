"""Every path any command takes is absolute by the time the command runs, whatever the cwd.

The commands are found by walking the CLI itself: a new command or option that takes a path
is checked without being listed here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeship.cli.lazy import load
from edgeship.cli.main import COMMANDS
from edgeship.cli.paths import absolute
from edgeship.release.bundle import ComponentSpec
from tests.cli.entry import edgeship

RELATIVE = "rel/x"


def every_command() -> Iterator[tuple[str, Any]]:
    """(command line, click command) for every command and group, loaded as `edgeship` loads them."""

    def walk(line: str, command: Any) -> Iterator[tuple[str, Any]]:
        yield line, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(f"{line} {name}", sub)

    for name, entry in COMMANDS.items():
        yield from walk(f"edgeship {name}", load(name, entry))


def parse(command: Any, value: str) -> dict[str, Any]:
    """The values the command would run with if every argument and valued option were ``value``."""
    args = [value for p in command.params if p.param_type_name == "argument"]
    for p in command.params:
        if p.param_type_name == "option" and not getattr(p, "is_flag", False) and not getattr(p, "count", False):
            args += [p.opts[0], value]
    # Resilient: options that cannot take the value (numbers, choices) end up None instead of failing.
    with command.make_context(command.name, args, resilient_parsing=True) as ctx:
        return dict(ctx.params)


def is_path(value: Any) -> bool:
    return isinstance(value, Path) or (isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, Path) for v in value))


PATH_PARAMS = [(line, name) for line, command in every_command() for name, value in parse(command, RELATIVE).items() if is_path(value)]
COMMANDS_BY_LINE = dict(every_command())


def test_the_walk_finds_the_known_path_options() -> None:
    found = set(PATH_PARAMS)
    for known in [("edgeship agent run", "data_dir"), ("edgeship delta make", "old"), ("edgeship release push", "health"),
                  ("edgeship server", "data_dir"), ("edgeship init", "directory"), ("edgeship runtime serve", "data_dir")]:
        assert known in found, known


@pytest.mark.parametrize(("line", "name"), PATH_PARAMS, ids=[f"{line} {name}" for line, name in PATH_PARAMS])
def test_relative_path_arrives_absolute(line: str, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    value = parse(COMMANDS_BY_LINE[line], RELATIVE)[name]
    expected = Path.cwd() / RELATIVE
    assert value == expected if isinstance(value, Path) else all(v == expected for v in value), value


def test_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cwd = Path.cwd()
    (cwd / "model-v3.gguf").touch()
    (cwd / "latest.gguf").symlink_to(cwd / "model-v3.gguf")
    assert absolute(Path("latest.gguf")) == cwd / "latest.gguf", "a link keeps the name it was given"
    assert absolute([Path("a"), Path("/b")]) == [cwd / "a", Path("/b")]
    assert absolute((Path("a"),)) == (cwd / "a",)
    assert absolute("rel/x") == "rel/x" and absolute(None) is None and absolute(3) == 3, "only paths change"


def test_component_paths_inside_options_are_absolute_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`release push -c` and `optimize --with` take [NAME:]KIND=PATH strings."""
    monkeypatch.chdir(tmp_path)
    spec = ComponentSpec.parse("model/gguf=models/tiny.gguf")
    assert (spec.path, spec.name) == (Path.cwd() / "models" / "tiny.gguf", "tiny.gguf")


def test_the_command_gets_an_absolute_path_on_every_typer(typer_path: list[Path], tmp_path: Path) -> None:
    """Older typer parses a path as a string and makes the Path afterwards: caught as well."""
    r = edgeship("delta", "stats", "missing.esd", cwd=tmp_path, pythonpath=typer_path)
    assert r.returncode == 2 and f"patch {tmp_path.resolve() / 'missing.esd'} does not exist" in r.stderr, r.stderr
