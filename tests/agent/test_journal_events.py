"""Journal records survive a round trip and damage is reported; the event queue loses and doubles nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeship.agent.events import Event, EventQueue, step_event_id
from edgeship.agent.journal import Assignment, Journal, JournalEntry
from edgeship.agent.machine import Phase, State, StepOutcome
from edgeship.errors import AgentError, ServerError


def test_journal_round_trip_and_sequence(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.json")
    assert j.read() is None
    a = Assignment("llm", "1.1.0", "ab" * 32, rollback=True, window={"start": "02:00", "end": "04:00"}, notice_s=60)
    e = j.write(JournalEntry("job-1", State.DOWNLOADING, Phase.BEGIN, a, from_release="cd" * 32, switch_at=5.0))
    e = j.write(e.at(State.DOWNLOADING, Phase.END, outcome=StepOutcome(ok=False, reason="x", refused=True)))
    back = j.read()
    assert back == e and back.seq == 2 and back.outcome == StepOutcome(ok=False, reason="x", refused=True)
    assert (tmp_path / "journal.json").stat().st_mode & 0o777 == 0o600


def test_a_damaged_journal_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "journal.json").write_text('{"format": "edgeship-agent-journal/1", "step": "nope"')
    with pytest.raises(AgentError, match="fsck"):
        Journal(tmp_path / "journal.json").read()


def test_queue_keeps_order_and_ids_and_survives_a_failed_send(tmp_path: Path) -> None:
    q = EventQueue(tmp_path / "events")
    ids = [step_event_id("job", s) for s in ("assigned", "downloading", "verifying")]
    for i, s in zip(ids, ("assigned", "downloading", "verifying"), strict=True):
        assert q.put(Event(type="state", state=s, id=i))
    assert not q.put(Event(type="state", state="assigned", id=ids[0]))  # a re-run step reports the same event once
    assert len(q) == 3

    def down(batch: list[dict]) -> None:
        raise ServerError("offline")

    with pytest.raises(ServerError):
        q.flush(down)
    assert len(q) == 3
    got: list[dict] = []
    assert q.flush(got.extend) == 3
    assert [e["id"] for e in got] == ids and len(q) == 0
    assert json.dumps(got[0])  # plain JSON, as the protocol wants


def test_step_event_ids_are_stable_and_distinct() -> None:
    assert step_event_id("j", "trial", 1) == step_event_id("j", "trial", 1)
    assert len({step_event_id("j", "trial", 1), step_event_id("j", "trial", 2), step_event_id("k", "trial", 1)}) == 3
