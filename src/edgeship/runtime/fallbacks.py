"""Which models of which release run on the CPU because their accelerator failed the health suite.

The agent asks for the move during its trial (``POST /admin/swap`` with ``cpu``); the runtime
keeps it in the data dir, so after a restart it serves the release the way its trial passed,
not on the accelerator that failed it. ``edgeship runtime plan`` reads it too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import ConfigDict, TypeAdapter, ValidationError

from edgeship.store.fsutil import write_atomic

FILE = "runtime-cpu.json"  # {release_id: {component: why}}
_SHAPE = TypeAdapter(dict[str, dict[str, str]], config=ConfigDict(strict=True))
log = logging.getLogger(__name__)


class CpuFallbacks:
    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / FILE
        self._moves = self._read()

    def _read(self) -> dict[str, dict[str, str]]:
        # Losing the file only costs a trial's fallback: accelerators are tried again on the next swap.
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.warning("ignoring %s, which cannot be read (%s): every model follows its plan", self.path, exc.strerror)
            return {}
        try:
            return _SHAPE.validate_json(raw)
        except ValidationError:
            log.warning("ignoring %s: not JSON of release -> component -> reason (damaged?): every model follows its plan",
                        self.path)
            return {}

    def get(self, release_id: str) -> dict[str, str]:
        """Components of ``release_id`` to run on the CPU, each with why (empty: follow the plan)."""
        return dict(self._moves.get(release_id, {}))

    def put(self, release_id: str, moves: Mapping[str, str], *, installed: Callable[[str], bool]) -> None:
        """Remember ``moves`` for ``release_id`` ({}: forget); releases no longer ``installed`` are dropped."""
        kept = {r: m for r, m in self._moves.items() if r != release_id and installed(r)}
        if moves:
            kept[release_id] = dict(moves)
        if kept != self._moves:
            write_atomic(self.path, json.dumps(kept, indent=1, sort_keys=True).encode())
            self._moves = kept
