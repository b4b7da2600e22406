"""The oldest typer pyproject.toml allows, installed apart with pip (cached), to run the CLI on."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest

from tests.helpers.real_model import cache_dir

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def lower_bound(package: str) -> str:
    """The version in ``package>=VERSION`` among the project's dependencies."""
    for spec in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]:
        found = re.fullmatch(rf"{re.escape(package)}>=([\w.]+)", spec.replace(" ", ""))
        if found:
            return found.group(1)
    raise AssertionError(f"pyproject.toml has no {package}>=VERSION")


def oldest_typer() -> Path:
    """A directory to put on PYTHONPATH: typer at its lower bound with the dependencies pip picks
    for it; skips outside CI when pip cannot get it, fails under CI=true."""
    version = lower_bound("typer")
    target = cache_dir() / f"typer-{version}-py{sys.version_info[0]}{sys.version_info[1]}"
    if (target / "typer").is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".typer-", dir=target.parent))
    try:
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(tmp), f"typer=={version}"],
                              capture_output=True, text=True)
        if done.returncode != 0:
            reason = f"pip could not install typer=={version}: {(done.stderr.strip().splitlines() or ['no output'])[-1]}"
            if os.environ.get("CI") == "true":
                pytest.fail(reason)
            pytest.skip(reason)
        os.replace(tmp, target)  # whole or not at all, for the next run
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
