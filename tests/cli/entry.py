"""The real `edgeship` script (the console entry point pip installed), run in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

SCRIPT = Path(sys.executable).with_name("edgeship")
SRC = Path(__file__).resolve().parents[2] / "src"


def edgeship(*args: str, python: Sequence[str] = (), script: Sequence[str] = (), cwd: Path | None = None,
             pythonpath: Sequence[Path] = (), timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``edgeship ARGS`` as a user would, or ``python SCRIPT ARGS`` (e.g. ``-m edgeship.agent``);
    ``python`` adds interpreter flags (``-X importtime``).

    The sources under test come first on the path, then ``pythonpath`` (e.g. another typer).
    """
    if not script:
        assert SCRIPT.exists(), f"{SCRIPT} is missing: install the package (make) first"
        script = [str(SCRIPT)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, [SRC, *pythonpath])), "COLUMNS": "200", "TERM": "dumb"}
    return subprocess.run([sys.executable, *python, *script, *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout)
