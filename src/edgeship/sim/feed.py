"""The engine's tally of a rollout, kept up to date in bulk from the virtual fleet's arrays.

The engine decides from a ``Tally``: devices counted per phase and class, health reports
pooled per hardware class. Devices alike in place, state, releases and hardware sort alike,
so the engine's own ``Tally.sort`` is asked once per kind of report and the devices of that
kind are counted at once; health reports join and leave the engine's pools in batches. The
orders read back from a decision are the engine's ``Orders.answer`` per (place, class).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgeship.rollout import Assignment, Decision, DeviceState, DeviceView, HealthMetrics, Rollout, Tally
from edgeship.rollout.cohort import cohort_value
from edgeship.rollout.engine import Orders, fixed_place, stage_of
from edgeship.rollout.health import HealthPool
from edgeship.rollout.policy import Phase
from edgeship.rollout.selector import ID_KEY
from edgeship.sim.fleet import HARDWARE, Fleet

STATES = tuple(DeviceState)
CLASSES = 4  # the engine's device classes (done, failed, started, waiting)

# What a device's order asks of it, per (place, class).
NO_ORDER, INSTALL, ROLL_BACK = 0, 1, 2

# A device's report as the fleet keeps it: state code, whether it runs and whether it
# targets the new release, and which health it reports (see VirtualFleet.health).
Reports = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
Health = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


class TallyFeed:
    """Places every device once, then feeds the engine's tally the reports that changed."""

    def __init__(self, rollout: Rollout, fleet: Fleet, previous: str) -> None:
        self.rollout = rollout
        self.tally = Tally(rollout)
        self._fleet, self._previous = fleet, previous
        self._fixed: list[Assignment] = []  # fixed answers; a device placed at one has code -1 - index
        self.where = self._place(rollout, fleet)
        n = len(fleet)
        self.cls = np.full(n, -1, np.int8)  # class the tally counts the device in (-1: not yet counted)
        self._pool = np.full(n, -1, np.int16)  # index into _pools of the pool its health sits in
        self._health = np.zeros(n, np.int8)  # which health it reported into that pool
        self._pools: list[HealthPool] = []
        # Per kind of report (see ``feed``): its class (-1: not sorted yet) and pool index.
        kinds = len(STATES) * 2 * 2 * len(HARDWARE) * 2
        self._sorted_cls = np.full(kinds, -1, np.int8)
        self._sorted_pool = np.full(kinds, -1, np.int16)
        self._table = np.zeros((len(self._fixed) + len(rollout.policy.phases) + 1, CLASSES), np.int8)

    def placed_upto(self, phase: int) -> int:
        """Devices that enter the rollout at ``phase`` or earlier."""
        return int(np.count_nonzero((self.where >= 0) & (self.where <= phase)))

    def place_of(self, i: int) -> int | Assignment:
        return self._place_at(int(self.where[i]))

    def _place_at(self, code: int) -> int | Assignment:
        """A place code as the engine knows the place: a phase (>= 0) or a fixed assignment (< 0)."""
        return code if code >= 0 else self._fixed[-1 - code]

    def feed(self, idx: np.ndarray, reports: Reports, health: Health) -> None:
        """Bring the tally up to date with the latest reports of devices ``idx`` (sorted, unique)."""
        if not len(idx):
            return
        state, on_new, to_new, kind = reports(idx)
        where = self.where[idx]
        key = ((state.astype(np.int64) * 2 + on_new) * 2 + to_new) * len(HARDWARE) + self._fleet.hardware[idx]
        key = key * 2 + (where >= 0)
        # The engine sorts each kind of report once; a lookup table sorts the devices.
        for k in np.unique(key[self._sorted_cls[key] < 0]).tolist():
            f = int(np.flatnonzero(key == k)[0])
            self._sort(k, int(idx[f]), int(state[f]), bool(on_new[f]), bool(to_new[f]))
        new_cls, new_pool = self._sorted_cls[key], self._sorted_pool[key]
        old_cls = self.cls[idx]
        self._count(where[old_cls >= 0], old_cls[old_cls >= 0], -1)
        self._count(where, new_cls, 1)
        self.cls[idx] = new_cls
        moved = (self._pool[idx] != new_pool) | (self._health[idx] != kind)
        if moved.any():
            m = idx[moved]
            self._move(m, self._pool[m], self._health[m], remove=True, health=health)
            self._pool[m], self._health[m] = new_pool[moved], kind[moved]
            self._move(m, self._pool[m], self._health[m], remove=False, health=health)

    def orders(self, decision: Decision) -> None:
        """Read the engine's answer for each (place, class) of this decision."""
        answers = decision.assignments
        assert isinstance(answers, Orders)  # decide_tally's orders, worked out per (place, class)
        offset = len(self._fixed)
        for row in range(self._table.shape[0]):
            where = self._place_at(row - offset)
            for cls in range(CLASSES):
                a = answers.answer(where, cls)
                self._table[row, cls] = NO_ORDER if a.release is None else ROLL_BACK if a.rollback else INSTALL

    def order(self, idx: np.ndarray) -> np.ndarray:
        """What the last decision orders devices ``idx`` to do (NO_ORDER, INSTALL, ROLL_BACK)."""
        return self._table[self.where[idx] + len(self._fixed), self.cls[idx]]

    # Internals

    def _place(self, rollout: Rollout, fleet: Fleet) -> np.ndarray:
        n, phases = len(fleet), rollout.policy.phases
        selectors = [rollout.target, *([rollout.policy.pilot] if rollout.policy.pilot is not None else [])]
        by_id = any(k == ID_KEY for s in selectors for k, _ in s.terms)
        first, kind = (np.arange(n), np.arange(n)) if by_id else fleet.kinds()
        answers = [fixed_place(rollout, fleet.device_id(int(i)), fleet.tags(int(i)), fleet.facts(int(i))) for i in first]
        codes = np.array([self._code(a) for a in answers], np.int16)
        where = codes[kind]
        hashed = np.flatnonzero(np.array([a is None for a in answers])[kind])
        # Only the cohort value needs the device's own ID: one hash per device, as the engine's ``place``.
        rid, device_id = rollout.id, fleet.device_id
        values = np.fromiter((cohort_value(rid, device_id(i)) for i in hashed.tolist()), float, len(hashed))
        where[hashed] = _stages(phases, values)
        return where

    def _code(self, a: int | Assignment | None) -> int:
        if a is None:
            return 0  # placed by cohort afterwards
        if isinstance(a, int):
            return a
        for k, known in enumerate(self._fixed):
            if known == a:
                return -1 - k
        self._fixed.append(a)
        return -len(self._fixed)

    def _sort(self, key: int, i: int, state: int, on_new: bool, to_new: bool) -> None:
        """Ask the engine how device ``i``'s report, and so every report of its kind, sorts."""
        rollout, fleet = self.rollout, self._fleet
        current = rollout.release if on_new else self._previous
        view = DeviceView(fleet.device_id(i), fleet.tags(i), fleet.facts(i), current, STATES[state],
                          rollout.release if to_new else self._previous, HealthMetrics(0.0, 0.0))
        cls, pool = self.tally.sort(self.place_of(i), view)
        self._sorted_cls[key] = cls
        self._sorted_pool[key] = -1 if pool is None else self._pool_index(pool)

    def _pool_index(self, pool: HealthPool) -> int:
        for k, known in enumerate(self._pools):
            if known is pool:
                return k
        self._pools.append(pool)
        return len(self._pools) - 1

    def _count(self, where: np.ndarray, cls: np.ndarray, sign: int) -> None:
        offset = len(self._fixed)
        counts = np.bincount((where.astype(np.int64) + offset) * CLASSES + cls, minlength=self._table.size)
        for v in np.flatnonzero(counts).tolist():
            c = int(counts[v])
            row, cls_ = divmod(v, CLASSES)
            self.tally.count(self._place_at(row - offset), cls_, sign * c)

    def _move(self, idx: np.ndarray, pool: np.ndarray, kind: np.ndarray, *, remove: bool, health: Health) -> None:
        has = pool >= 0
        idx, pool, kind = idx[has], pool[has], kind[has]
        if not len(idx):
            return
        err, lat, out = health(idx, kind)
        for p in np.flatnonzero(np.bincount(pool)).tolist():
            mine = pool == p
            target = self._pools[p]
            (target.remove_columns if remove else target.add_columns)(err[mine], lat[mine], out[mine])


def _stages(phases: tuple[Phase, ...], values: np.ndarray) -> np.ndarray:
    """The engine's ``stage_of`` for each cohort value.

    Stages are increasing shares, so the stage never decreases with the value: over the
    values in order, ``stage_of`` is asked only where a run of equal stages may end.
    """
    order = np.argsort(values, kind="stable")
    ordered = values[order].tolist()
    out = np.empty(len(ordered), np.int16)

    def fill(lo: int, hi: int, first: int, last: int) -> None:  # stages of ordered[lo] and ordered[hi - 1]
        while first != last:
            mid = (lo + hi) // 2
            stage = stage_of(phases, ordered[mid - 1])
            fill(lo, mid, first, stage)
            lo, first = mid, stage_of(phases, ordered[mid])
        out[lo:hi] = first

    if ordered:
        fill(0, len(ordered), stage_of(phases, ordered[0]), stage_of(phases, ordered[-1]))
    result = np.empty_like(out)
    result[order] = out
    return result
