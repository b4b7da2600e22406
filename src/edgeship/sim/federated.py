"""Federated rounds rehearsed on virtual devices, on a simulated clock, under the server's round rules.

Each round every cohort member either drops out (never answers), straggles (finishes after the
deadline) or uploads in time; an upload is accepted or rejected by the update checks. The round
closes by ``learn.rounds.round_closes`` and is used or abandoned by ``learn.rounds.round_outcome``,
the same functions the server runs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from edgeship.errors import UsageError
from edgeship.learn.rounds import RoundOutcome, round_closes, round_outcome


@dataclass(frozen=True)
class FedSimConfig:
    devices: int = 10_000
    rounds: int = 5
    cohort_size: int | None = None  # None: every device
    min_participants: int = 2
    deadline_s: float = 3600.0
    dropout_rate: float = 0.0  # chance a cohort member never answers in a round
    straggler_rate: float = 0.0  # chance it finishes training only after the deadline
    reject_rate: float = 0.0  # chance an upload fails the update checks
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("dropout_rate", "straggler_rate", "reject_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise UsageError(f"--{name.replace('_', '-')} {getattr(self, name)} is not a share between 0 and 1", hint="e.g. 0.05")
        if self.devices < 1 or self.rounds < 1 or self.min_participants < 1 or self.deadline_s <= 0:
            raise UsageError("devices, rounds, --min-participants and --deadline must be positive")
        if self.cohort_size is not None and not 1 <= self.cohort_size <= self.devices:
            raise UsageError(f"--cohort-size {self.cohort_size} is not between 1 and the {self.devices} devices")


@dataclass(frozen=True)
class SimRound:
    number: int
    outcome: RoundOutcome
    closed_at: float  # seconds after the round opened


def simulate_rounds(config: FedSimConfig) -> list[SimRound]:
    """Every round of one run; the cohort is picked once, as the server does."""
    rng = random.Random(config.seed)
    cohort = config.cohort_size or config.devices
    return [_round(n, cohort, config, rng) for n in range(1, config.rounds + 1)]


def _round(number: int, cohort: int, c: FedSimConfig, rng: random.Random) -> SimRound:
    arrivals: list[tuple[float, bool]] = []  # (seconds after opening, passes the checks)
    for _ in range(cohort):
        if rng.random() < c.dropout_rate:
            continue
        late = rng.random() < c.straggler_rate
        at = c.deadline_s * (rng.uniform(1.0, 3.0) if late else rng.uniform(0.05, 0.95))
        arrivals.append((at, rng.random() >= c.reject_rate))
    arrivals.sort()
    received = accepted = 0
    closed_at = c.deadline_s
    for at, ok in arrivals:
        if round_closes(cohort, received, at, c.deadline_s):
            break  # this upload and every later one find the round closed: the device is dropped
        received += 1
        accepted += ok
        if round_closes(cohort, received, at, c.deadline_s):
            closed_at = at
            break
    return SimRound(number, round_outcome(cohort, received, accepted, c.min_participants), closed_at)
