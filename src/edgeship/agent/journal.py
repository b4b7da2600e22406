"""The job journal: one JSON record, replaced atomically and fsynced before and after every step.

    {"format": "edgeship-agent-journal/1", "seq": 12, "time": "...",
     "job": "<uuid>", "step": "downloading", "phase": "begin",
     "assignment": {"name", "version", "release_id", "rollback", "rollout_id", "window", "notice_s"},
     "from_release": "<id>"|null, "from_previous": "<id>"|null,
     "notified_at": 1760000000.0, "switch_at": 1760003600.0|null,
     "verify_round": 0, "trial_round": 0,
     "outcome": {"ok": true, "reason": null, "retry": false}|null,
     "rejected": {"<release-id>[:rollback]": "<reason>"}}

Only the last record matters: it names the step in flight and everything needed to finish
or undo it (`edgeship.agent.machine.recover`). ``rejected`` carries over from job to job
so a release refused or rolled back is not retried until the operator assigns another.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgeship.agent.machine import Phase, State, StepOutcome
from edgeship.errors import AgentError
from edgeship.store.fsutil import Writer, fsync_dir, write_atomic

FORMAT = "edgeship-agent-journal/1"
CRASH_ENV = "EDGESHIP_AGENT_CRASH_AT"


@dataclass(frozen=True)
class Assignment:
    """What the server asked this device to run (protocol: check-in ``assignment``)."""

    name: str
    version: str
    release_id: str
    rollback: bool = False
    rollout_id: str | None = None
    window: dict[str, str] | None = None  # {"start": "02:00", "end": "04:00"}, device local time
    notice_s: float = 0.0

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def key(self) -> str:
        """What a refusal is remembered by: a refused downgrade may still come as a rollback order."""
        return self.release_id + (":rollback" if self.rollback else "")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Assignment:
        """From the server's answer or the journal; ValueError (or KeyError, TypeError) if malformed."""
        window = data.get("window")
        if window is not None and not (isinstance(window, dict) and all(isinstance(window.get(k), str) for k in ("start", "end"))):
            raise ValueError(f"window {str(window)[:80]} is not {{'start': 'HH:MM', 'end': 'HH:MM'}}")
        notice_s = float(data.get("notice_s") or 0.0)
        if not (math.isfinite(notice_s) and notice_s >= 0):
            raise ValueError(f"notice_s {notice_s} is not a number of seconds")
        rollout_id = data.get("rollout_id")
        return cls(
            name=str(data["name"]),
            version=str(data["version"]),
            release_id=str(data["release_id"]),
            rollback=bool(data.get("rollback", False)),
            rollout_id=None if rollout_id is None else str(rollout_id),
            window={"start": window["start"], "end": window["end"]} if window else None,
            notice_s=notice_s,
        )


@dataclass(frozen=True)
class JournalEntry:
    job: str
    step: State
    phase: Phase
    assignment: Assignment
    from_release: str | None = None
    from_previous: str | None = None
    notified_at: float = 0.0
    switch_at: float | None = None
    verify_round: int = 0
    trial_round: int = 0
    outcome: StepOutcome | None = None
    rejected: dict[str, str] = field(default_factory=dict)
    seq: int = 0

    def at(self, step: State, phase: Phase, **changes: Any) -> JournalEntry:
        return replace(self, step=step, phase=phase, **changes)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(format=FORMAT, step=self.step.value, phase=self.phase.value,
                    time=datetime.now(timezone.utc).isoformat(timespec="milliseconds"))
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JournalEntry:
        if data.get("format") != FORMAT:
            raise AgentError(f"journal format {data.get('format')!r} is not {FORMAT}",
                             hint="this data dir was written by another agent version; run `edgeship agent fsck`")
        outcome = data.get("outcome")
        return cls(
            job=data["job"],
            step=State(data["step"]),
            phase=Phase(data["phase"]),
            assignment=Assignment.from_json(data["assignment"]),
            from_release=data.get("from_release"),
            from_previous=data.get("from_previous"),
            notified_at=float(data.get("notified_at", 0.0)),
            switch_at=data.get("switch_at"),
            verify_round=int(data.get("verify_round", 0)),
            trial_round=int(data.get("trial_round", 0)),
            outcome=StepOutcome(**outcome) if outcome else None,
            rejected=dict(data.get("rejected", {})),
            seq=int(data.get("seq", 0)),
        )


class Journal:
    def __init__(self, path: Path, write: Writer = write_atomic) -> None:
        self.path = path
        self._write = write

    def read(self) -> JournalEntry | None:
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise AgentError(f"cannot read the agent journal {self.path}: {exc}",
                             hint="run `edgeship agent fsck --repair` to fall back to the installed releases") from exc
        try:
            return JournalEntry.from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise AgentError(f"the agent journal {self.path} is damaged: {exc}",
                             hint="run `edgeship agent fsck --repair` to fall back to the installed releases") from exc

    def quarantine(self) -> Path:
        """Move a damaged journal aside (kept for a post-mortem); the agent then starts from
        the releases `current` and `previous` name, which are complete by construction."""
        dest = self.path.with_name(self.path.name + ".damaged")
        os.replace(self.path, dest)
        fsync_dir(self.path.parent)
        return dest

    def write(self, entry: JournalEntry) -> JournalEntry:
        """Make ``entry`` durable (temp file, fsync, rename, fsync dir), then run any crash hook."""
        entry = replace(entry, seq=entry.seq + 1)
        self._write(self.path, json.dumps(entry.to_json(), sort_keys=True).encode(), 0o600)
        crashpoint(f"{entry.step.value}:{'before' if entry.phase is Phase.BEGIN else 'after'}")
        return entry


def crashpoint(name: str) -> None:
    """Test hook: ``EDGESHIP_AGENT_CRASH_AT=switching:before`` kills the agent with SIGKILL here.

    ``<step>:before`` fires right after a step's begin record is durable, ``<step>:after``
    right after its end record; a few points inside steps have their own names
    (``switching:mid``). Several points may be given, comma-separated.
    """
    wanted = os.environ.get(CRASH_ENV)
    if wanted and name in wanted.split(","):
        os.kill(os.getpid(), 9)
