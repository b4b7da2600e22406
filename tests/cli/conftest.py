"""The typer versions the CLI tests run on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from packaging.version import Version

from tests.cli.entry import SRC
from tests.cli.oldest import lower_bound, oldest_typer


@pytest.fixture(scope="session", params=["newest", "oldest"])
def typer_path(request: pytest.FixtureRequest) -> list[Path]:
    """Nothing for the typer installed (the newest pip gives), or where the oldest allowed one is."""
    if request.param == "newest":
        return []
    path = [oldest_typer()]
    version = subprocess.run([sys.executable, "-c", "import typer; print(typer.__version__)"], capture_output=True,
                             text=True, env={"PYTHONPATH": f"{SRC}:{path[0]}"}, check=True).stdout.strip()
    assert Version(version) == Version(lower_bound("typer")), "the test runs on the oldest allowed typer"
    return path
