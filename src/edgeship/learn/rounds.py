"""When a federated round closes and whether it is used: the rules the server and the simulator share.

Pure logic, no I/O, no clock of its own: the server passes datetimes, the simulator seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

Moment = TypeVar("Moment", datetime, float)


def round_closes(cohort: int, received: int, now: Moment, deadline: Moment) -> bool:
    """A round closes when every cohort member has answered or its deadline has passed."""
    return received >= cohort or not now < deadline


@dataclass(frozen=True)
class RoundOutcome:
    cohort: int
    received: int
    accepted: int
    used: bool
    reason: str

    @property
    def rejected(self) -> int:
        return self.received - self.accepted

    @property
    def dropped(self) -> int:
        """Cohort members with no update when the round closed (offline, crashed or too slow)."""
        return self.cohort - self.received


def round_outcome(cohort: int, received: int, accepted: int, min_participants: int) -> RoundOutcome:
    """Whether a closed round is used (aggregated into a candidate) or abandoned, and why."""
    closed_by = "every cohort member answered" if received >= cohort else f"the deadline passed with {cohort - received} of {cohort} silent"
    if accepted >= min_participants:
        return RoundOutcome(cohort, received, accepted, True, f"{closed_by}; {accepted} accepted updates (minimum {min_participants})")
    return RoundOutcome(cohort, received, accepted, False,
                        f"{closed_by}; only {accepted} accepted updates, fewer than the minimum {min_participants}")
