"""Terminal output shared by every command: rich for people, --json for scripts."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

# Consoles resolve sys.stdout/sys.stderr at print time, so tests capturing output work.
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    """Write machine-readable output: stable key order, no colour, one document."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
