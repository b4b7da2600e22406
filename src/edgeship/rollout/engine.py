"""The rollout engine: from a rollout, the fleet's reports and the time, what happens next.

``decide`` is pure: the server and the simulator call it with the same inputs and get
the same assignments and the same next rollout state. It never reads a clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from edgeship.errors import RolloutError
from edgeship.rollout.cohort import cohort_value
from edgeship.rollout.health import HealthMetrics, HealthPool, HealthVerdict, compare, matched
from edgeship.rollout.model import (
    FAILURE_STATES,
    DeviceFacts,
    DeviceView,
    Rollout,
    RolloutState,
    RolloutStatus,
)
from edgeship.rollout.policy import OnFail, Phase
from edgeship.rollout.window import MaintenanceWindow


class AssignmentReason(str, Enum):
    ASSIGNED = "assigned"
    NOT_YET = "not_yet_in_stage"
    SKIPPED = "skipped"  # requirements unmet
    NOT_TARGETED = "not_targeted"
    HELD = "held"  # rollout paused or aborted before this device started
    ROLLBACK = "rollback"


@dataclass(frozen=True, slots=True)
class Assignment:
    """What one device should run; ``release`` None means "keep what you run"."""

    reason: AssignmentReason
    release: str | None = None
    # Agents refuse to go back to an older release unless the order says so (signed later).
    rollback: bool = False
    phase: int | None = None  # the phase that brought the device in
    detail: str = ""
    window: MaintenanceWindow | None = None
    notice: float = 0.0  # seconds


# Where each device enters the rollout: a phase index, or a fixed answer (not targeted,
# skipped). It depends only on tags, facts and the rollout's plan, so callers may compute
# it once per rollout and fleet and pass it to every ``decide``.
Placement = dict[str, "int | Assignment"]

_NOT_TARGETED = Assignment(AssignmentReason.NOT_TARGETED)


@dataclass(frozen=True)
class StageCount:
    """Per phase, the devices it brought in (each device is counted in one phase only)."""

    phase: int
    name: str
    targeted: int
    done: int
    failed: int
    in_progress: int
    status: str  # waiting | rolling | baking | passed | paused | aborted
    bake_left: float | None  # seconds, while baking


@dataclass(frozen=True)
class RolloutEvent:
    """A state change, for timelines, audit logs and (later) webhooks."""

    at: float
    status: RolloutStatus
    phase: str
    message: str


@dataclass(frozen=True)
class Decision:
    rollout: Rollout  # with its new state: store it
    assignments: Mapping[str, Assignment]
    stages: tuple[StageCount, ...]
    skipped: int
    not_targeted: int
    rollback_remaining: int  # devices still to bring back, or to hear from since the abort (aborted with rollback)
    health: HealthVerdict
    events: tuple[RolloutEvent, ...]
    next_check: float | None  # call again by then at the latest (end of a bake)

    def summary(self) -> dict[str, Any]:
        """The rollout's status without per-device rows, for ``--json`` and reports."""
        state = self.rollout.state
        return {
            "rollout": self.rollout.id,
            "release": self.rollout.name,
            "status": state.status.value,
            "phase": self.rollout.policy.phases[state.phase].name,
            "reason": state.reason,
            "rollback": state.rollback,
            "rollback_remaining": self.rollback_remaining,
            "skipped": self.skipped,
            "not_targeted": self.not_targeted,
            "stages": [dataclasses.asdict(s) for s in self.stages],
            "health_regressions": list(self.health.regressions),
        }


def place(rollout: Rollout, devices: Iterable[DeviceView]) -> Placement:
    """Where each device enters ``rollout`` (see ``Placement``)."""
    phases = rollout.policy.phases
    return {d.id: _place_one(rollout, phases, d) for d in devices}


def _place_one(rollout: Rollout, phases: tuple[Phase, ...], device: DeviceView) -> int | Assignment:
    fixed = fixed_place(rollout, device.id, device.tags, device.facts)
    return stage_of(phases, cohort_value(rollout.id, device.id)) if fixed is None else fixed


def fixed_place(rollout: Rollout, device_id: str, tags: Mapping[str, str], facts: DeviceFacts) -> int | Assignment | None:
    """Where a device enters whatever its cohort value: not targeted, skipped, the pilot; None: by cohort.

    Devices alike in ID-free selectors, tags and facts share the answer, so a caller placing
    a large fleet of few kinds asks once per kind and hashes only the cohort values.
    """
    if not rollout.target.matches(device_id, tags):
        return _NOT_TARGETED
    unmet = rollout.requirements.unmet_by(facts.ram, facts.arch, facts.accelerator)
    if unmet:
        return Assignment(AssignmentReason.SKIPPED, detail="; ".join(unmet))
    pilot = rollout.policy.pilot
    if pilot is not None and pilot.matches(device_id, tags):
        return 0
    return None


def stage_of(phases: tuple[Phase, ...], value: float) -> int:
    """The first percentage stage whose share covers cohort ``value``."""
    for i, phase in enumerate(phases):
        if phase.percent is not None and value < phase.percent / 100.0:
            return i
    return len(phases)  # beyond the last stage (a plan that stops short of 100 %)


# Device classes against the rollout's release.
_DONE, _FAILED, _STARTED, _WAITING = range(4)


def _classify(d: DeviceView, release: str) -> int:
    if d.current == release:
        return _DONE
    if d.target == release:
        return _FAILED if d.state in FAILURE_STATES else _STARTED
    return _WAITING


# What the engine keeps of one device: where it entered, its class, its last check-in, and
# the health pool its report sits in (with the report).
_Entry = tuple["int | Assignment", int, "float | None", "HealthPool | None", "HealthMetrics | None"]


class Tally:
    """The engine's inputs in aggregate, kept up to date one device report at a time.

    Per phase, devices per class; skipped and untargeted devices; health pools per hardware
    class. ``update`` costs the same for any fleet size, so a caller that feeds it only the
    devices whose report changed decides in time proportional to the changes. It belongs
    to one rollout's release, target and plan (its state may move on).
    """

    def __init__(self, rollout: Rollout, devices: Iterable[DeviceView] = (), placement: Mapping[str, int | Assignment] | None = None) -> None:
        self._rollout = rollout
        self._placement = placement if placement is not None else {}
        # One more row than phases: devices beyond the last stage (a plan that stops short
        # of 100 %) are targeted but belong to no stage.
        self.counts = [[0, 0, 0, 0] for _ in range(len(rollout.policy.phases) + 1)]
        self.skipped = self.not_targeted = 0
        # Health reports grouped by hardware class, so cohorts are compared like for like.
        self.candidate: dict[tuple[object, ...], HealthPool] = {}
        self.baseline: dict[tuple[object, ...], HealthPool] = {}
        self._entries: dict[str, _Entry] = {}
        self._watch: tuple[int, float | None, float] | None = None
        self._lingering: set[str] = set()
        # The whole fleet at once: health goes into each pool in one sorted batch.
        batches: dict[int, tuple[HealthPool, list[HealthMetrics]]] = {}
        entries, counts = self._entries, self.counts
        for d in devices:
            entry = self._entry(d)
            old = entries.get(d.id)
            entries[d.id] = entry
            if old is not None:  # listed twice: the last report counts
                if isinstance(old[0], Assignment):
                    self._count(old, -1)
                else:
                    counts[old[0]][old[1]] -= 1
                    if old[3] is not None and old[4] is not None:
                        batches[id(old[3])][1].remove(old[4])
            where, cls, _, pool, health = entry
            if isinstance(where, Assignment):
                self._count(entry, 1)
                continue
            counts[where][cls] += 1
            if pool is not None and health is not None:
                batches.setdefault(id(pool), (pool, []))[1].append(health)
        for pool, items in batches.values():
            pool.add_all(items)

    def update(self, d: DeviceView) -> None:
        """Take ``d`` as the device's latest report (a new device or a changed one)."""
        entry = self._entry(d)
        old = self._entries.get(d.id)
        self._entries[d.id] = entry
        if old is None:
            self._count(entry, 1)
        elif isinstance(entry[0], Assignment) or isinstance(old[0], Assignment):
            self._count(old, -1)
            self._count(entry, 1)
        else:
            # Most reports move a device between classes and leave its health alone.
            self.counts[old[0]][old[1]] -= 1
            self.counts[entry[0]][entry[1]] += 1
            if old[3] is not entry[3] or old[4] is not entry[4]:
                if old[3] is not None and old[4] is not None:
                    old[3].remove(old[4])
                if entry[3] is not None and entry[4] is not None:
                    entry[3].add(entry[4])
        if self._watch is not None:
            if self._lingers(entry, *self._watch):
                self._lingering.add(d.id)
            else:
                self._lingering.discard(d.id)

    def discard(self, device_id: str) -> None:
        """Forget a device (decommissioned)."""
        old = self._entries.pop(device_id, None)
        if old is not None:
            self._count(old, -1)
            self._lingering.discard(device_id)

    def __len__(self) -> int:
        return len(self._entries)

    def _entry(self, d: DeviceView) -> _Entry:
        rollout = self._rollout
        where = self._placement.get(d.id)
        if where is None:
            where = _place_one(rollout, rollout.policy.phases, d)
        cls, pool = self.sort(where, d)
        return where, cls, d.seen, pool, d.health

    def sort(self, where: int | Assignment, d: DeviceView) -> tuple[int, HealthPool | None]:
        """The class of report ``d`` from a device placed at ``where``, and the health pool it joins.

        For callers that keep the tally in bulk (``count`` and the pools): devices alike in
        place, state, releases and hardware class sort alike.
        """
        if isinstance(where, Assignment):
            return _WAITING, None
        release, previous, current = self._rollout.release, self._rollout.previous_release, d.current
        pool = None
        if d.health is not None and (current == release or (current == previous and previous is not None)):
            f = d.facts
            pools = self.candidate if current == release else self.baseline
            key = (f.arch, f.accelerator, f.ram)
            pool = pools.get(key)
            if pool is None:
                pool = pools[key] = HealthPool()
        return _classify(d, release), pool

    def count(self, where: int | Assignment, cls: int, n: int) -> None:
        """Count ``n`` more devices placed at ``where`` in class ``cls`` (negative: fewer); health apart."""
        if isinstance(where, Assignment):
            if where.reason is AssignmentReason.SKIPPED:
                self.skipped += n
            else:
                self.not_targeted += n
            return
        self.counts[where][cls] += n

    def _count(self, entry: _Entry, sign: int) -> None:
        where, cls, _, pool, health = entry
        self.count(where, cls, sign)
        if pool is not None and health is not None:
            if sign > 0:
                pool.add(health)
            else:
                pool.remove(health)

    def rollback_remaining(self, state: RolloutState) -> int:
        """Devices an abort with rollback still waits for (see ``_assign``).

        The devices still unheard of since the abort are listed once per abort and then
        kept up to date by ``update``.
        """
        watch = (state.phase, state.ordered_since, state.since)
        if watch != self._watch:
            self._watch = watch
            self._lingering = {d for d, e in self._entries.items() if self._lingers(e, *watch)}
        back = sum(c[_DONE] + c[_STARTED] for c in self.counts)
        return back + len(self._lingering)

    @staticmethod
    def _lingers(entry: _Entry, reached: int, ordered: float | None, since: float) -> bool:
        # An agent runs a job without a window from order to commit in one round and
        # reports it only then: a device that took its order (checked in after the orders
        # went out) and has not checked in since the abort may be committing the release
        # unreported. It counts until it is heard from; its next report says whether to
        # order it back. One offline since before the orders never got one, and must not
        # keep the rollback open.
        where, cls, seen, _, _ = entry
        return (not isinstance(where, Assignment) and cls == _WAITING and where <= reached and seen is not None
                and seen < since and (ordered is None or seen >= ordered))

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)


def decide(
    rollout: Rollout, devices: Iterable[DeviceView], now: float, placement: Mapping[str, int | Assignment] | None = None
) -> Decision:
    """Assign each device and move the rollout on, as of Unix time ``now``.

    ``placement`` (from ``place``) saves rehashing a large fleet on every call; devices it
    does not know are placed on the fly. Callers that decide again and again keep a
    ``Tally`` up to date instead and call ``decide_tally``.
    """
    return decide_tally(rollout, Tally(rollout, devices, placement), now)


def decide_tally(rollout: Rollout, tally: Tally, now: float) -> Decision:
    """``decide`` from a tally of the fleet's reports: the work does not grow with the fleet.

    The decision's ``assignments`` read the tally when asked, so they answer for each
    device's latest report: read them before updating the tally again.
    """
    phases = rollout.policy.phases
    health = compare(*matched(tally.candidate, tally.baseline), rollout.policy.health)
    state, events = _advance(rollout, tally.counts, health, now)
    rollout = dataclasses.replace(rollout, state=state)
    remaining = tally.rollback_remaining(state) if state.status is RolloutStatus.ABORTED and state.rollback else 0
    next_check = None
    if state.status is RolloutStatus.BAKING and state.bake_started is not None:
        next_check = state.bake_started + phases[state.phase].bake
    return Decision(
        rollout=rollout,
        assignments=Orders(rollout, tally),
        stages=_stage_counts(rollout, tally.counts, now),
        skipped=tally.skipped,
        not_targeted=tally.not_targeted,
        rollback_remaining=remaining,
        health=health,
        events=tuple(events),
        next_check=next_check,
    )


def _advance(
    rollout: Rollout, counts: list[list[int]], health: HealthVerdict, now: float
) -> tuple[RolloutState, list[RolloutEvent]]:
    """Walk the state machine as far as the reports allow (several empty stages may pass at once)."""
    phases = rollout.policy.phases
    state = rollout.state
    events: list[RolloutEvent] = []
    while state.status.is_active:
        phase = phases[state.phase]
        members = sum(sum(c) for c in counts[: state.phase + 1])
        failed = sum(c[_FAILED] for c in counts[: state.phase + 1])
        pending = sum(c[_STARTED] + c[_WAITING] for c in counts[: state.phase + 1])
        breach = _breach(phase, members, failed, health)
        if breach:
            rollback = rollout.policy.on_fail is OnFail.ROLLBACK
            status = RolloutStatus.ABORTED if rollback else RolloutStatus.PAUSED
            state = RolloutState(status, state.phase, now, None, breach, rollback, state.ordered_since)
            verb = "aborted, rolling back" if rollback else "paused"
            events.append(RolloutEvent(now, status, phase.name, f"{verb}: {breach}"))
            break
        settled = members == 0 or pending <= phase.max_pending * members
        if not settled:
            break
        if state.status is RolloutStatus.ROLLING and sum(counts[state.phase]) and phase.bake > 0:
            state = dataclasses.replace(state, status=RolloutStatus.BAKING, since=now, bake_started=now)
            events.append(RolloutEvent(now, state.status, phase.name, f"{phase.name} installed; baking"))
            continue
        if state.bake_started is not None and now < state.bake_started + phase.bake:
            break
        # A phase that brought in no device has nothing to bake: move straight on.
        if state.phase + 1 < len(phases):
            state = RolloutState(RolloutStatus.ROLLING, state.phase + 1, now, ordered_since=now)
            events.append(RolloutEvent(now, state.status, phases[state.phase].name, f"{phase.name} passed"))
        else:
            state = RolloutState(RolloutStatus.COMPLETED, state.phase, now)
            events.append(RolloutEvent(now, state.status, phase.name, "every stage passed"))
    return state, events


def _breach(phase: Phase, members: int, failed: int, health: HealthVerdict) -> str:
    """Why the phase is over budget, or "" when it is not."""
    if members and failed > phase.max_failure * members:
        return (
            f"{failed} of {members} devices failed in {phase.name} "
            f"({failed / members:.1%} > budget {phase.max_failure:.1%})"
        )
    if health.regressed:
        return "health regression: " + "; ".join(health.regressions)
    return ""


class Orders(Mapping[str, Assignment]):
    """Each device's order under a decided rollout state, worked out when asked.

    Devices share a handful of distinct answers, built once here; a device's answer
    depends only on where it entered the rollout and its class.
    """

    def __init__(self, rollout: Rollout, tally: Tally) -> None:
        state, policy = rollout.state, rollout.policy
        status = state.status
        self._tally = tally
        self._reached = state.phase
        self._rolling_back = status is RolloutStatus.ABORTED and state.rollback
        # Paused or aborted: devices that have not started are held; the others carry on.
        self._hold_waiting = not (status.is_active or status is RolloutStatus.COMPLETED)
        self._go = [
            Assignment(AssignmentReason.ASSIGNED, rollout.release, phase=i, window=policy.window, notice=policy.notice)
            for i in range(len(policy.phases))
        ]
        self._not_yet = Assignment(AssignmentReason.NOT_YET, detail=f"waits for a later stage than {policy.phases[state.phase].name}")
        self._held = Assignment(AssignmentReason.HELD, detail=f"rollout {status.value}: {state.reason}".rstrip(": "))
        # A rollback goes out at once, outside any window: a bad model is worse than a reboot.
        self._back = Assignment(AssignmentReason.ROLLBACK, rollout.previous_release, rollback=True, detail=state.reason)

    def __getitem__(self, device_id: str) -> Assignment:
        entry = self._tally._entries[device_id]
        return self.answer(entry[0], entry[1])

    def get(self, device_id: str, default: Assignment | None = None) -> Assignment | None:  # type: ignore[override]
        # Mapping.get goes through __getitem__ and an exception; the simulator asks a million times.
        entry = self._tally._entries.get(device_id)
        return default if entry is None else self.answer(entry[0], entry[1])

    def answer(self, where: int | Assignment, cls: int) -> Assignment:
        """The order for a device that entered at ``where`` and is of class ``cls``."""
        if isinstance(where, Assignment):
            return where
        if self._rolling_back:
            return self._back if cls == _DONE or cls == _STARTED else self._held
        if where > self._reached:
            return self._not_yet
        if self._hold_waiting and cls == _WAITING:
            return self._held
        return self._go[where]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tally)

    def __len__(self) -> int:
        return len(self._tally)


def reordered(tally: Tally, before: Rollout, after: Rollout) -> set[str]:
    """The devices whose order changes when ``before``'s state moves to ``after``'s (same plan).

    Only what a device's stored row holds counts (release, rollback, window, notice), so a
    pause touches the devices it holds, not the fleet. A device's answer depends only on where
    it entered and its class, so each distinct pair is compared once; the scan is in memory.
    """
    old, new = Orders(before, tally), Orders(after, tally)
    verdicts: dict[tuple[int, int], bool] = {}
    out = set()
    for device_id, (where, cls, *_) in tally._entries.items():
        if isinstance(where, Assignment):
            continue  # not targeted or skipped: the same answer in every state
        differs = verdicts.get((where, cls))
        if differs is None:
            differs = verdicts[where, cls] = row_key(old.answer(where, cls)) != row_key(new.answer(where, cls))
        if differs:
            out.add(device_id)
    return out


def row_key(a: Assignment) -> tuple[object, ...] | None:
    """What a device's stored assignment row holds of ``a`` (None: no row): two answers with the
    same key write the same row, which is what ``reordered`` relies on."""
    return None if a.release is None else (a.release, a.rollback, a.window, a.notice)


def _stage_counts(rollout: Rollout, counts: list[list[int]], now: float) -> tuple[StageCount, ...]:
    state = rollout.state
    # Devices of a phase not reached yet, or held by a pause, are not "in progress".
    assigned_upto = state.phase if state.status.is_active or state.status is RolloutStatus.COMPLETED else -1
    out = []
    for i, (phase, (done, failed, started, waiting)) in enumerate(zip(rollout.policy.phases, counts)):
        in_progress = started + (waiting if i <= assigned_upto else 0)
        bake_left = None
        if i < state.phase or state.status is RolloutStatus.COMPLETED:
            status = "passed"
        elif i > state.phase:
            status = "waiting"
        else:
            status = state.status.value
            if state.status is RolloutStatus.BAKING and state.bake_started is not None:
                bake_left = max(0.0, state.bake_started + phase.bake - now)
        out.append(StageCount(i, phase.name, done + failed + started + waiting, done, failed, in_progress, status, bake_left))
    return tuple(out)


# Operator actions: pure transitions the CLI and server apply to a stored rollout.


def pause(rollout: Rollout, now: float, reason: str = "paused by operator") -> Rollout:
    if not rollout.state.status.is_active:
        raise RolloutError(f"rollout {rollout.id} is {rollout.state.status.value}; only a running rollout pauses")
    return _with(rollout, RolloutState(RolloutStatus.PAUSED, rollout.state.phase, now, None, reason,
                                       ordered_since=rollout.state.ordered_since))


def resume(rollout: Rollout, now: float) -> Rollout:
    """Continue a paused rollout in the same phase; its bake starts again."""
    if rollout.state.status is not RolloutStatus.PAUSED:
        raise RolloutError(
            f"rollout {rollout.id} is {rollout.state.status.value}, not paused", hint="only a paused rollout resumes"
        )
    return _with(rollout, RolloutState(RolloutStatus.ROLLING, rollout.state.phase, now, ordered_since=now))


def abort(rollout: Rollout, now: float, reason: str = "aborted by operator", rollback: bool = True) -> Rollout:
    """Stop for good; with ``rollback`` every device that took the release is ordered back."""
    if rollout.state.status.is_final:
        raise RolloutError(f"rollout {rollout.id} is already {rollout.state.status.value}")
    if rollback and rollout.previous_release is None:
        raise RolloutError(
            f"rollout {rollout.id} names no previous release to roll back to", hint="abort without rollback"
        )
    return _with(rollout, RolloutState(RolloutStatus.ABORTED, rollout.state.phase, now, None, reason, rollback,
                                       rollout.state.ordered_since))


def promote(rollout: Rollout, now: float) -> Rollout:
    """Move to the next phase now, skipping what is left of the bake (operator override)."""
    if rollout.state.status.is_final:
        raise RolloutError(f"rollout {rollout.id} is {rollout.state.status.value}; nothing to promote")
    nxt = rollout.state.phase + 1
    if nxt >= len(rollout.policy.phases):
        return _with(rollout, RolloutState(RolloutStatus.COMPLETED, rollout.state.phase, now))
    return _with(rollout, RolloutState(RolloutStatus.ROLLING, nxt, now, ordered_since=now))


def _with(rollout: Rollout, state: RolloutState) -> Rollout:
    return dataclasses.replace(rollout, state=state)
