"""Bad flags, unknown commands and missing arguments: one red line, a hint, exit 2, no traceback,
through the real `edgeship` script on the newest typer installed and on the oldest we allow."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from edgeship.cli.main import report
from tests.cli.entry import edgeship

BAD = [
    (["--bogus"], "no such option", "--bogus", "edgeship"),
    (["bogus"], "no such command", "bogus", "edgeship"),
    (["agent", "run", "--onc"], "no such option", "--onc", "edgeship agent run"),
    (["agent", "bogus"], "no such command", "bogus", "edgeship agent"),
    (["agent", "run"], "missing option", "--data-dir", "edgeship agent run"),
    (["delta", "make"], "missing argument", "old", "edgeship delta make"),
    (["agent", "run", "--data-dir", "d", "--poll", "soon"], "invalid value", "--poll", "edgeship agent run"),
]


def assert_usage_error(r: subprocess.CompletedProcess[str], kind: str, names: str, command: str) -> None:
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 2, r.stderr  # no traceback, no usage block
    assert lines[0].startswith("error: ") and kind in lines[0].lower() and names.lower() in lines[0].lower(), lines[0]
    assert lines[1] == f"hint: see `{command} --help`"


@pytest.mark.parametrize(("args", "kind", "names", "command"), BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_command_line(typer_path: list[Path], args: list[str], kind: str, names: str, command: str) -> None:
    assert_usage_error(edgeship(*args, pythonpath=typer_path), kind, names, command)


def test_agent_module_entry_point(typer_path: list[Path]) -> None:
    """`python -m edgeship.agent` (the systemd unit's) says it the same way."""
    r = edgeship("run", "--bogus", script=["-m", "edgeship.agent"], pythonpath=typer_path)
    assert_usage_error(r, "no such option", "--bogus", "edgeship agent run")


def test_help_and_version_still_exit_0(typer_path: list[Path]) -> None:
    for args in (["--help"], ["--version"], ["agent", "run", "--help"]):
        r = edgeship(*args, pythonpath=typer_path)
        assert r.returncode == 0 and r.stdout and not r.stderr, (args, r.stderr)


def test_hint_text_is_not_markup(capsys: pytest.CaptureFixture[str]) -> None:
    report("--blob-store s3://b needs boto3", "pip install 'edgeship[s3]'")
    assert capsys.readouterr().err.splitlines() == ["error: --blob-store s3://b needs boto3", "hint: pip install 'edgeship[s3]'"]
