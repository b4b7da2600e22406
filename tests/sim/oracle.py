"""The event-driven virtual fleet of commit 5ad43b9, kept as a reference for the vectorised one.

One Python object per device and a heap of events, fed to the engine's ``Tally`` one report at
a time: slow, but written independently of the array model, so the two agreeing on what a
rollout looks like (how long, how many devices got through, where it stopped) is evidence
that the arrays move devices like agents. Used only by tests.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from edgeship.rollout import (
    Assignment,
    Decision,
    DeviceFacts,
    DeviceState,
    DeviceView,
    HealthMetrics,
    RolloutState,
    RolloutStatus,
    Tally,
    decide_tally,
    next_switch_time,
    place,
)
from edgeship.rollout.model import FAILURE_STATES
from edgeship.sim.config import SimConfig
from edgeship.sim.fleet import HARDWARE, Fleet, Hardware
from edgeship.sim.runner import PREVIOUS, RELEASE, make_rollout


@dataclass(frozen=True, slots=True)
class VirtualDevice:
    id: str
    tags: dict[str, str]
    facts: DeviceFacts
    hardware: Hardware
    link_bps: float
    checkin_s: float
    pilot: bool


def devices_of(fleet: Fleet) -> list[VirtualDevice]:
    """The same devices as the array fleet, one object each."""
    return [
        VirtualDevice(fleet.device_id(i), fleet.tags(i), fleet.facts(i), HARDWARE[fleet.hardware[i]],
                      float(fleet.link_bps[i]), float(fleet.checkin_s[i]), bool(fleet.pilot[i]))
        for i in range(len(fleet))
    ]


@dataclass
class Outcome:
    """What a run of either model comes to."""

    status: str
    phase: int
    duration: float  # seconds simulated
    ran: int
    on_release: list[tuple[float, int]]  # (seconds since the start, devices on the release) per tick


def run_reference(config: SimConfig, fleet: Fleet) -> Outcome:
    """The rollout of ``config`` on ``fleet`` with the event-driven model (the runner of 5ad43b9)."""
    rollout = make_rollout(config)
    agents = EventFleet(devices_of(fleet), config, RELEASE, PREVIOUS)
    placement = place(rollout, agents.views())
    t = config.start
    agents.changed()
    tally = Tally(rollout, agents.views(), placement)
    decision = decide_tally(rollout, tally, t)
    curve = []
    while True:
        agents.apply(decision, t)
        curve.append((t - config.start, agents.state_counts()["on_release"]))
        status = decision.rollout.state.status
        if agents.next_event() is None and (status.is_final or status is RolloutStatus.PAUSED):
            break
        wake = min(agents.next_event() or float("inf"), decision.next_check or float("inf"))
        if wake == float("inf") or t - config.start >= config.max_duration:
            break
        t = max(t + (config.settle_tick if status.is_final else config.tick), wake)
        agents.run_until(t)
        for view in agents.changed():
            tally.update(view)
        decision = decide_tally(decision.rollout, tally, t)
    state = decision.rollout.state
    return Outcome(state.status.value, state.phase, curve[-1][0], len(agents.ran), curve)


VERIFY_BPS = 150e6  # hashing speed on a small board, bytes per second
SWITCH_S = 20.0  # load the new model beside the old one and flip the pointer
REBOOT_S = (60.0, 240.0)  # seconds a crashed or power-cut device takes to come back
OFFLINE_MEAN_S = 4 * 3600.0
MAX_VERIFY_TRIES = 3
_STATES = tuple(DeviceState)
_STATE_INDEX = {id(s): i for i, s in enumerate(_STATES)}
# States in which the device already runs the new release (not yet committed).
_SWITCHED = frozenset({DeviceState.SWITCHING, DeviceState.TRIAL})


class _Step(IntEnum):
    PICKUP = 0
    DOWNLOAD = 1
    VERIFY = 2
    STAGED = 3
    SWITCH = 4
    TRIAL = 5
    TRIAL_DONE = 6
    ROLLBACK_DONE = 7


class _Agent:
    """The mutable part of one virtual device."""

    __slots__ = ("baseline", "epoch", "notified_at", "order", "pickup_pending", "pursuing", "spec", "tries")

    def __init__(self, spec: VirtualDevice, baseline: HealthMetrics) -> None:
        self.spec = spec
        self.pursuing: str | None = None  # release being installed
        self.epoch = 0  # bumped to cancel the events of an abandoned install
        self.pickup_pending = False
        self.tries = 0
        self.notified_at = 0.0
        self.order: Assignment | None = None  # the assignment being carried out
        self.baseline = baseline


class EventFleet:
    """The simulated agents, one object each, moved through a heap of events."""

    def __init__(self, devices: Sequence[VirtualDevice], config: SimConfig, release: str, previous: str) -> None:
        self._config = config
        self._release = release
        self._rng = random.Random(config.seed ^ 0x5EED)
        self._agents = [_Agent(d, self._baseline_health(d)) for d in devices]
        self._views = [
            DeviceView(d.id, d.tags, d.facts, previous, DeviceState.IDLE, previous, a.baseline)
            for d, a in zip(devices, self._agents)
        ]
        self._queue: list[tuple[float, int, int, int, _Step]] = []  # (time, seq, device, epoch, step)
        self._seq = 0
        self._assignments: Mapping[str, Assignment] = {}
        # Devices per state, indexed like _STATES (hashing an enum member runs Python code:
        # a list index found by id() is several times cheaper, millions of times a run).
        self._counts = [0] * len(_STATES)
        self._counts[_STATE_INDEX[id(DeviceState.IDLE)]] = len(devices)
        self._on_release = 0
        self._applied_state: RolloutState | None = None
        self._changed: set[int] = set()  # devices that reported since ``changed()`` was last called
        self.started: set[str] = set()  # picked up the new release
        self.ran: set[str] = set()  # switched to it (ran it, at least for a trial)
        self.rollback_orders = 0
        self.switches: list[tuple[str, float]] = []  # (device, time) of each switch to the new release

    def views(self) -> Sequence[DeviceView]:
        return self._views

    def changed(self) -> Sequence[DeviceView]:
        views = self._views
        out = [views[i] for i in sorted(self._changed)]
        self._changed.clear()
        return out

    def apply(self, decision: Decision, now: float) -> None:
        self._assignments = decision.assignments
        # A device's answer changes only with the rollout's state; within one state a
        # device's own reports never give it new work, so the scan can be skipped.
        if decision.rollout.state == self._applied_state:
            return
        self._applied_state = decision.rollout.state
        get = decision.assignments.get
        for i, (agent, view) in enumerate(zip(self._agents, self._views)):
            a = get(view.id)
            # Most devices have no order (a later stage) or one already on its way.
            if a is None or a.release is None or agent.pickup_pending:
                continue
            if _wants_change(agent, view, a):
                agent.pickup_pending = True
                self._at(now + self._checkin_delay(agent), i, _Step.PICKUP)

    def run_until(self, t: float) -> None:
        handlers = self._handlers
        while self._queue and self._queue[0][0] <= t:
            when, _, i, epoch, step = heapq.heappop(self._queue)
            if step is _Step.PICKUP or epoch == self._agents[i].epoch:
                handlers[step](self, i, when)

    def next_event(self) -> float | None:
        return self._queue[0][0] if self._queue else None

    def state_counts(self) -> Mapping[str, int]:
        return {**{s.value: n for s, n in zip(_STATES, self._counts)}, "on_release": self._on_release}

    # Device behaviour

    def _baseline_health(self, d: VirtualDevice) -> HealthMetrics:
        rng = self._rng
        return HealthMetrics(
            error_rate=rng.uniform(0.002, 0.012),
            latency_p95_ms=d.hardware.latency_ms * rng.lognormvariate(0, 0.1),
            output_stat=rng.gauss(0.8, 0.02),
        )

    def _checkin_delay(self, agent: _Agent) -> float:
        # A poller at a random phase: the next check-in is anywhere within one period.
        delay = self._rng.uniform(0, agent.spec.checkin_s)
        # Pilot devices sit in the lab, always online.
        if not agent.spec.pilot and self._rng.random() < self._config.faults.offline:
            delay += self._rng.expovariate(1 / OFFLINE_MEAN_S)
        return delay

    def _at(self, t: float, i: int, step: _Step) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (t, self._seq, i, self._agents[i].epoch, step))

    def _report(
        self, i: int, state: DeviceState, t: float, target: str | None = None, current: str | None = None,
        health: HealthMetrics | None = None,
    ) -> None:
        """The device reports ``state`` (and a new target, or a new release it runs with its health)."""
        view = self._views[i]
        self._counts[_STATE_INDEX[id(view.state)]] -= 1
        self._counts[_STATE_INDEX[id(state)]] += 1
        if current is not None:
            self._on_release += (current == self._release) - (view.current == self._release)
        else:
            current, health = view.current, view.health
        # Built directly: dataclasses.replace costs several times more, millions of times a run.
        self._views[i] = DeviceView(view.id, view.tags, view.facts, current, state, target or view.target, health, view.seen)
        self._changed.add(i)

    def _pickup(self, i: int, t: float) -> None:
        agent, view = self._agents[i], self._views[i]
        agent.pickup_pending = False
        a = self._assignments.get(view.id)
        if a is None or not _wants_change(agent, view, a):
            return
        assert a.release is not None
        agent.epoch += 1
        if a.rollback:
            self.rollback_orders += 1
            agent.pursuing = None
            if view.current == a.release and view.state not in _SWITCHED:  # drop the install, stay
                self._report(i, DeviceState.ROLLED_BACK, t, target=a.release)
            else:  # the previous release is still installed: switch back to it at once
                self._report(i, DeviceState.SWITCHING, t, target=a.release)
                self._at(t + SWITCH_S, i, _Step.ROLLBACK_DONE)
            return
        agent.pursuing, agent.tries, agent.notified_at, agent.order = a.release, 0, t, a
        self.started.add(view.id)
        self._report(i, DeviceState.ASSIGNED, t, target=a.release)
        self._download(i, t)

    def _download(self, i: int, t: float) -> None:
        agent = self._agents[i]
        took = self._config.release_size / agent.spec.link_bps
        # A crash mid-download costs a reboot; the download resumes where it stopped.
        while self._rng.random() < self._config.faults.crash_download:
            took += self._rng.uniform(*REBOOT_S)
        self._report(i, DeviceState.DOWNLOADING, t)
        self._at(t + took, i, _Step.VERIFY)

    def _verify(self, i: int, t: float) -> None:
        agent = self._agents[i]
        self._report(i, DeviceState.VERIFYING, t)
        done = t + self._config.release_size / VERIFY_BPS
        if self._rng.random() >= self._config.faults.corrupt:
            self._at(done, i, _Step.STAGED)
            return
        agent.tries += 1
        if agent.tries >= MAX_VERIFY_TRIES:
            agent.pursuing = None
            self._report(i, DeviceState.FAILED, done)
        else:
            self._at(done, i, _Step.DOWNLOAD)

    def _staged(self, i: int, t: float) -> None:
        agent = self._agents[i]
        order = agent.order
        assert order is not None
        at = max(t, next_switch_time(agent.notified_at, order.window, agent.spec.facts.timezone, order.notice))
        self._report(i, DeviceState.WAITING_WINDOW if at > t else DeviceState.STAGED, t)
        self._at(at, i, _Step.SWITCH)

    def _switch(self, i: int, t: float) -> None:
        self.switches.append((self._views[i].id, t))
        took = SWITCH_S
        # Power lost mid-switch: the journal brings the device back and the switch reruns.
        while self._rng.random() < self._config.faults.power_loss_switch:
            took += self._rng.uniform(*REBOOT_S)
        self._report(i, DeviceState.SWITCHING, t)
        self._at(t + took, i, _Step.TRIAL)

    def _trial(self, i: int, t: float) -> None:
        self.ran.add(self._views[i].id)
        self._report(i, DeviceState.TRIAL, t)
        self._at(t + self._rng.uniform(60.0, 240.0), i, _Step.TRIAL_DONE)

    def _trial_done(self, i: int, t: float) -> None:
        agent, cfg, rng = self._agents[i], self._config, self._rng
        release, agent.pursuing = agent.pursuing, None
        base = agent.baseline
        bad = rng.random() < cfg.release_bad_rate * agent.spec.hardware.fragility
        if bad and rng.random() < cfg.bad_trial_failure:
            self._report(i, DeviceState.ROLLED_BACK, t)  # the agent's own rollback: target stays
            return
        if bad:
            health = HealthMetrics(base.error_rate + 0.15, base.latency_p95_ms * 1.8, output_stat=0.5)
        else:
            health = HealthMetrics(base.error_rate, base.latency_p95_ms * 0.95, output_stat=base.output_stat)
        self._report(i, DeviceState.COMMITTED, t, current=release, health=health)

    def _rollback_done(self, i: int, t: float) -> None:
        view = self._views[i]
        self._report(i, DeviceState.ROLLED_BACK, t, current=view.target, health=self._agents[i].baseline)

    _handlers: ClassVar[dict[_Step, Callable[[EventFleet, int, float], None]]] = {
        _Step.PICKUP: _pickup,
        _Step.DOWNLOAD: _download,
        _Step.VERIFY: _verify,
        _Step.STAGED: _staged,
        _Step.SWITCH: _switch,
        _Step.TRIAL: _trial,
        _Step.TRIAL_DONE: _trial_done,
        _Step.ROLLBACK_DONE: _rollback_done,
    }


def _wants_change(agent: _Agent, view: DeviceView, a: Assignment) -> bool:
    """Whether this assignment asks the device to do something it is not already doing."""
    if a.release is None:
        return False
    if a.rollback:
        return view.current != a.release or agent.pursuing is not None
    gave_up = view.target == a.release and view.state in FAILURE_STATES
    return a.release != view.current and a.release != agent.pursuing and not gave_up
