"""The simulated clock: devices act, the engine decides, repeat until the rollout settles."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from edgeship.release.manifest import Requirements
from edgeship.rollout import (
    Decision,
    Rollout,
    RolloutEvent,
    RolloutStatus,
    Tally,
    decide_tally,
    place,
)
from edgeship.sim.backend import FleetBackend
from edgeship.sim.config import SimConfig
from edgeship.sim.fleet import VirtualDevice, make_fleet
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
    devices: list[VirtualDevice]
    fleet: FleetBackend
    decision: Decision  # the last one
    events: list[RolloutEvent] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    first_stage_size: int = 0  # pilot plus the first percentage stage
    stalled: bool = False

    @property
    def on_previous_at_end(self) -> int:
        return sum(1 for v in self.fleet.views() if v.current == PREVIOUS)

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
    devices = make_fleet(config.devices, random.Random(config.seed), config.pilot_share, config.faults.slow_link)
    fleet = VirtualFleet(devices, config, RELEASE, PREVIOUS)
    return run(make_rollout(config), fleet, config, devices, progress)


def run(
    rollout: Rollout, fleet: FleetBackend, config: SimConfig, devices: list[VirtualDevice], progress: Progress | None
) -> SimResult:
    """Drive ``fleet`` with the engine on a simulated clock (any ``FleetBackend``)."""
    placement = place(rollout, fleet.views())
    first = 1 if rollout.policy.pilot is not None else 0
    t = config.start
    # The engine reads the fleet in aggregate; each tick feeds it only the reports that changed.
    fleet.changed()
    tally = Tally(rollout, fleet.views(), placement)
    decision = decide_tally(rollout, tally, t)
    result = SimResult(
        config,
        devices,
        fleet,
        decision,
        first_stage_size=sum(1 for p in placement.values() if isinstance(p, int) and p <= first),
    )
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
        for view in fleet.changed():
            tally.update(view)
        decision = decide_tally(decision.rollout, tally, t)
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


def fleet_mix(devices: list[VirtualDevice]) -> dict[str, dict[str, int]]:
    """Hardware and time-zone counts, for the report."""
    return {
        "hardware": dict(Counter(d.hardware.name for d in devices).most_common()),
        "timezones": dict(Counter(d.facts.timezone for d in devices).most_common()),
        "pilot": {"devices": sum(d.pilot for d in devices)},
    }
