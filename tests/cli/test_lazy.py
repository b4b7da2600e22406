"""The root command table: `edgeship --help` lists every command without importing one, and the
table cannot drift from what the modules say."""

from __future__ import annotations

import inspect

import pytest

from edgeship.cli.lazy import load
from edgeship.cli.main import COMMANDS
from tests.cli.entry import edgeship

# What the commands use and the root must not load: the server stack, numeric and model
# libraries, TUF and crypto, the HTTP client, and every command module.
HEAVY = {"fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "pydantic", "pydantic_core", "numpy", "gguf", "onnx",
         "onnxruntime", "llama_cpp", "tuf", "securesystemslib", "cryptography", "httpx", "yaml", "jinja2", "zstandard", "paho"}
ROOT_MODULES = {"edgeship", "edgeship.cli", "edgeship.cli.main", "edgeship.cli.lazy", "edgeship.cli.paths", "edgeship.cli.output",
                "edgeship.errors"}


def imported(importtime: str) -> set[str]:
    """Module names from ``python -X importtime``'s report (``import time: self | cumulative | name``)."""
    rows = [line.split("|")[-1] for line in importtime.splitlines() if line.startswith("import time:")]
    return {row.strip() for row in rows[1:]}  # the first row is the column header


def one_line(command: object) -> str:
    """The line `--help` shows for a command: its short help, else its help's first paragraph."""
    text = getattr(command, "short_help", None) or getattr(command, "help", None) or ""
    return inspect.cleandoc(text).split("\n\n")[0].replace("\n", " ").strip()


@pytest.mark.parametrize("args", [["--help"], ["--version"]])
def test_root_imports_no_command(args: list[str]) -> None:
    r = edgeship(*args, python=["-X", "importtime"])
    assert r.returncode == 0, r.stderr[-2000:]
    modules = imported(r.stderr)
    assert "edgeship.cli.main" in modules, "the report covers the CLI's own imports"
    assert not {m for m in modules if m.split(".")[0] in HEAVY}
    assert {m for m in modules if m.startswith("edgeship")} <= ROOT_MODULES


def test_a_command_imports_its_module_only() -> None:
    r = edgeship("delta", "--help", python=["-X", "importtime"])
    assert r.returncode == 0, r.stderr[-2000:]
    modules = imported(r.stderr)
    assert "edgeship.cli.delta" in modules
    assert not {m for m in modules if m.startswith("edgeship.cli.") and m.count(".") == 2} - ROOT_MODULES - {
        "edgeship.cli.delta"}
    assert not {"fastapi", "sqlalchemy"} & {m.split(".")[0] for m in modules}


# Only `edgeship server` (run, not asked for help) serves: no command's help may load the stack.
SERVER_STACK = {"fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "psycopg"}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_no_commands_help_loads_the_server_stack(name: str) -> None:
    r = edgeship(name, "--help", python=["-X", "importtime"])
    assert r.returncode == 0, r.stderr[-2000:]
    modules = imported(r.stderr)
    assert COMMANDS[name].module in modules, "the report covers the command's module"
    assert not SERVER_STACK & {m.split(".")[0] for m in modules}


def test_help_lists_every_command_with_its_line() -> None:
    r = edgeship("--help")
    assert r.returncode == 0, r.stderr
    words = " ".join(r.stdout.split())  # rich pads and may wrap: compare word runs
    for name, entry in COMMANDS.items():
        assert f" {name} {' '.join(entry.help.split())} " in words, name


@pytest.mark.parametrize("name", COMMANDS)
def test_table_help_is_the_modules_own(name: str) -> None:
    real = load(name, COMMANDS[name])
    assert real.name == name
    assert COMMANDS[name].help == one_line(real)
