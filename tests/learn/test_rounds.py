"""The round rules the server and the simulator share (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from edgeship.learn.rounds import round_closes, round_outcome


def test_a_round_closes_when_everyone_answered_or_at_the_deadline() -> None:
    assert not round_closes(5, 4, 10.0, 60.0)
    assert round_closes(5, 5, 10.0, 60.0)
    assert round_closes(5, 0, 60.0, 60.0)  # the deadline itself closes it
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert not round_closes(3, 1, now, now + timedelta(seconds=1))
    assert round_closes(3, 1, now + timedelta(seconds=1), now)


def test_a_round_is_used_only_with_enough_accepted_updates() -> None:
    used = round_outcome(cohort=10, received=8, accepted=6, min_participants=6)
    assert used.used and (used.rejected, used.dropped) == (2, 2)
    assert "deadline passed with 2 of 10 silent" in used.reason
    abandoned = round_outcome(cohort=4, received=4, accepted=1, min_participants=2)
    assert not abandoned.used
    assert "every cohort member answered" in abandoned.reason and "only 1 accepted" in abandoned.reason
