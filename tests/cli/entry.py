"""The real `edgeship` script (the console entry point pip installed), run in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(sys.executable).with_name("edgeship")
SRC = Path(__file__).resolve().parents[2] / "src"


def edgeship(*args: str, python: list[str] | None = None, cwd: Path | None = None,
             pythonpath: list[Path] = (), timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``edgeship ARGS`` as a user would; ``python`` adds interpreter flags (``-X importtime``).

    The sources under test come first on the path, then ``pythonpath`` (e.g. another typer).
    """
    assert SCRIPT.exists(), f"{SCRIPT} is missing: install the package (make) first"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, [SRC, *pythonpath])), "COLUMNS": "200", "TERM": "dumb"}
    return subprocess.run([sys.executable, *(python or []), str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)
