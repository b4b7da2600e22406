"""Reports to the server, queued on disk: nothing is lost offline, nothing is counted twice.

Each event is one file ``events/<seq>-<id>.json``, written atomically before anything
tries to send it, and deleted only after the server accepted the batch holding it. A
crash between the server's answer and the delete resends the event; the server stores
each event ID once (protocol: ``duplicates``). Events about a journaled step get an ID
derived from the job and the step, so a step re-run after a crash reports the *same*
event again instead of a second one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgeship.store.fsutil import Writer, write_atomic

# Namespace of the deterministic IDs of step events (uuid5 of "<job>/<step>/<round>").
STEP_NAMESPACE = uuid.UUID("4d1b7c2e-9a57-4cde-8f0e-2f6a1c3b5e90")
BATCH = 100  # events per POST: bounded request size after a long time offline


@dataclass(frozen=True)
class Event:
    type: str  # state | error | health | metrics | feedback | download
    state: str | None = None
    release: str | None = None  # "name@version"
    data: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "time": self.time, "type": self.type, "state": self.state, "release": self.release, "data": self.data}


def step_event_id(job: str, step: str, round_: int = 0) -> str:
    return str(uuid.uuid5(STEP_NAMESPACE, f"{job}/{step}/{round_}"))


Sender = Callable[[list[dict[str, Any]]], None]


class EventQueue:
    def __init__(self, directory: Path, write: Writer = write_atomic) -> None:
        self.dir = directory
        self._write = write

    def _files(self) -> list[Path]:
        return sorted(self.dir.glob("*.json")) if self.dir.is_dir() else []

    def put(self, event: Event) -> bool:
        """Queue ``event`` durably; False if an event with its ID is already queued."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if any(self.dir.glob(f"*-{event.id}.json")):
            return False
        files = self._files()
        seq = int(files[-1].name.split("-", 1)[0]) + 1 if files else 1
        self._write(self.dir / f"{seq:012d}-{event.id}.json", json.dumps(event.to_json()).encode(), 0o644)
        return True

    def pending(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_bytes()) for p in self._files()]

    def __len__(self) -> int:
        return len(self._files())

    def flush(self, send: Sender) -> int:
        """Send queued events in order, oldest first; returns how many were delivered.

        ``send`` raises on failure, which leaves the rest queued for the next flush.
        """
        sent = 0
        while files := self._files()[:BATCH]:
            send([json.loads(p.read_bytes()) for p in files])
            for p in files:
                p.unlink()
            sent += len(files)
        return sent
