"""The simulated clock: devices act, the engine decides, repeat until the rollout settles."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from edgeship.release.manifest import Requirements
from edgeship.rollout import (
    Decision,
    Rollout,
    RolloutEvent,
    RolloutStatus,
    decide_tally,
)
from edgeship.sim.config import SimConfig
from edgeship.sim.feed import TallyFeed
from edgeship.sim.fleet import make_fleet
from edgeship.sim.virtual import VirtualFleet

# Stand-ins for release IDs: what matters to the engine is that they differ.
PREVIOUS = hashlib.sha256(b"edgeship-sim previous release").hexdigest()
RELEASE = hashlib.sha256(b"edgeship-sim new release").hexdigest()


@dataclass(frozen=True)
class Sample:
    """The fleet at one engine tick."""

    t: float  # seconds since the start
    status: str
    phase: str
    states: dict[str, int]  # devices per agent state, plus on_release
    stages: list[tuple[int, int, int]]  # per phase: done, failed, in progress


@dataclass
class SimResult:
    config: SimConfig
    fleet: VirtualFleet
    decision: Decision  # the last one
    events: list[RolloutEvent] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    first_stage_size: int = 0  # pilot plus the first percentage stage
    stalled: bool = False

    @property
    def on_previous_at_end(self) -> int:
        return len(self.fleet.on_release) - int(self.fleet.on_release.sum())

    @property
    def duration(self) -> float:
        return self.samples[-1].t if self.samples else 0.0


Progress = Callable[[float, Decision, Mapping[str, int]], None]


def make_rollout(config: SimConfig) -> Rollout:
    return Rollout(
        id=f"sim-{config.seed}",
        release=RELEASE,
        previous_release=PREVIOUS,
        release_ref="detector@2.0.0",
        requirements=Requirements(min_ram=config.min_ram),
        policy=config.policy,
    )


def simulate(config: SimConfig, progress: Progress | None = None) -> SimResult:
    """Run one rollout against a virtual fleet and return what happened."""
    fleet = make_fleet(config.devices, np.random.default_rng(config.seed), config.pilot_share, config.faults.slow_link)
    rollout = make_rollout(config)
    feed = TallyFeed(rollout, fleet, PREVIOUS)
    return run(rollout, VirtualFleet(fleet, config, feed), feed, config, progress)


def run(rollout: Rollout, fleet: VirtualFleet, feed: TallyFeed, config: SimConfig, progress: Progress | None) -> SimResult:
    """Drive ``fleet`` with the engine on a simulated clock; ``feed`` keeps the engine's tally."""
    first = 1 if rollout.policy.pilot is not None else 0
    t = config.start
    # The engine reads the fleet in aggregate; each tick feeds it only the reports that changed.
    fleet.sync()
    decision = decide_tally(rollout, feed.tally, t)
    result = SimResult(config, fleet, decision, first_stage_size=feed.placed_upto(first))
    while True:
        fleet.apply(decision, t)
        counts = fleet.state_counts()
        result.events.extend(decision.events)
        result.samples.append(_sample(t - config.start, decision, counts))
        if progress is not None:
            progress(t - config.start, decision, counts)
        status = decision.rollout.state.status
        quiet = fleet.next_event() is None
        if quiet and (status.is_final or status is RolloutStatus.PAUSED):
            break
        wake = min(fleet.next_event() or float("inf"), decision.next_check or float("inf"))
        if wake == float("inf") or t - config.start >= config.max_duration:
            result.stalled = status.is_active  # nothing left that could move the rollout on
            break
        # Between reports nothing changes for the engine, so skip quiet stretches (windows).
        t = max(t + (config.settle_tick if status.is_final else config.tick), wake)
        fleet.run_until(t)
        fleet.sync()
        decision = decide_tally(decision.rollout, feed.tally, t)
    result.decision = decision
    return result


def _sample(t: float, decision: Decision, counts: Mapping[str, int]) -> Sample:
    state = decision.rollout.state
    return Sample(
        t=t,
        status=state.status.value,
        phase=decision.rollout.policy.phases[state.phase].name,
        states={k: v for k, v in counts.items() if v},
        stages=[(s.done, s.failed, s.in_progress) for s in decision.stages],
    )
