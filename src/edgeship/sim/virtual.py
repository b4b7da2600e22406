"""In-process virtual devices: the agent's state machine on a simulated clock, as arrays.

Each device checks in now and then, downloads at its link speed, verifies, waits for its
maintenance window, switches, runs a trial and commits or rolls back, reporting every
state like the real agent. A device holds at most two pending events (its next check-in
for an order, and the next step of what it is doing); between two engine ticks devices
do not affect one another, so every device due is moved one step at a time, all at once,
until none is due. Faults and a misbehaving release are drawn in bulk from one seeded
generator in a fixed order, so a seed replays the same run.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from edgeship.rollout import Decision, DeviceState, DeviceView, HealthMetrics
from edgeship.rollout.model import FAILURE_STATES
from edgeship.sim.config import SimConfig
from edgeship.sim.feed import INSTALL, ROLL_BACK, STATES, TallyFeed
from edgeship.sim.fleet import HARDWARE, ZONES, Fleet
from edgeship.sim.windows import DAY, SwitchTimes

VERIFY_BPS = 150e6  # hashing speed on a small board, bytes per second
SWITCH_S = 20.0  # load the new model beside the old one and flip the pointer
REBOOT_S = (60.0, 240.0)  # seconds a crashed or power-cut device takes to come back
TRIAL_S = (60.0, 240.0)
OFFLINE_MEAN_S = 4 * 3600.0
MAX_VERIFY_TRIES = 3

_CODE = {s: np.int8(i) for i, s in enumerate(STATES)}
_FAILURE = np.array([s in FAILURE_STATES for s in STATES])
_SWITCHED = np.array([s in (DeviceState.SWITCHING, DeviceState.TRIAL) for s in STATES])
_LATENCY = np.array([h.latency_ms for h in HARDWARE])
_FRAGILITY = np.array([h.fragility for h in HARDWARE])

# The next step of what a device is doing.
_NONE, _DOWNLOAD, _VERIFY, _STAGED, _SWITCH, _TRIAL, _TRIAL_DONE, _ROLLBACK_DONE = range(8)
# The health a device reports: the previous release's, the new one's, the new one misbehaving.
BASELINE, GOOD, DEGRADED = 0, 1, 2

NEVER = np.inf


class VirtualFleet:
    """Simulated agents, one array entry each, driven by the engine's decisions."""

    def __init__(self, fleet: Fleet, config: SimConfig, feed: TallyFeed) -> None:
        n = len(fleet)
        self.devices = fleet  # what each device is (hardware, zone, link): fixed for the run
        self._config, self._feed = config, feed
        self._rng = np.random.default_rng([config.seed, 0x5EED])
        rng = self._rng
        self._error = rng.uniform(0.002, 0.012, n)
        self._latency = _LATENCY[fleet.hardware] * rng.lognormal(0.0, 0.1, n)
        self._output = rng.normal(0.8, 0.02, n)
        self.state = np.full(n, _CODE[DeviceState.IDLE], np.int8)
        self.on_release = np.zeros(n, bool)  # runs (has committed) the new release
        self.to_release = np.zeros(n, bool)  # its state refers to the new release (else the previous)
        self.health_kind = np.full(n, BASELINE, np.int8)
        self._installing = np.zeros(n, bool)  # pursuing the new release
        self._pickup = np.full(n, NEVER)  # next check-in that acts on an order
        self._next = np.full(n, NEVER)  # next step of what it is doing
        self._step = np.zeros(n, np.int8)
        self._tries = np.zeros(n, np.int8)
        self._notified = np.zeros(n)
        self.switched_at = np.full(n, np.nan)  # last switch to the new release
        self.started = np.zeros(n, bool)  # picked up the new release
        self.ran = np.zeros(n, bool)  # switched to it (ran it, at least for a trial)
        self.rollback_orders = 0
        self._changed = np.ones(n, bool)  # reported since the last sync: every device, at the start
        self._counts = np.bincount(self.state, minlength=len(STATES))  # devices per state
        self._applied_state: object = None
        policy = config.policy
        self._switch_times = SwitchTimes(
            policy.window, policy.notice, [z[0] for z in ZONES], config.start - DAY, config.start + config.max_duration + 30 * DAY
        )

    # The runner's side

    def sync(self) -> None:
        """Feed the engine's tally every report since the last call."""
        idx = np.flatnonzero(self._changed)
        self._changed[idx] = False
        self._feed.feed(idx, self._reports, self.health)

    def apply(self, decision: Decision, now: float) -> None:
        """Publish the engine's orders; devices pick them up at their next check-in."""
        self._feed.orders(decision)
        # A device's order changes only with the rollout's state; within one state a device's
        # own reports never give it new work, so the scan can be skipped.
        if decision.rollout.state == self._applied_state:
            return
        self._applied_state = decision.rollout.state
        idle = np.flatnonzero(self._pickup == NEVER)
        want = idle[self._wants(idle, self._feed.order(idle))]
        self._pickup[want] = now + self._checkin_delay(want)

    def run_until(self, t: float) -> None:
        """Let the devices act until time ``t``: each device's events in its own time order."""
        due = np.flatnonzero(np.minimum(self._pickup, self._next) <= t)
        while len(due):
            pickup, step = self._pickup[due], self._next[due]
            picks = due[(pickup <= t) & (pickup <= step)]
            steps = due[(step <= t) & (step < pickup)]
            self._on_pickup(picks, self._pickup[picks])
            self._on_step(steps)
            # Only a device that just acted can have become due again.
            due = np.concatenate((picks, steps))

    def next_event(self) -> float | None:
        when = min(float(self._pickup.min()), float(self._next.min()))
        return None if when == NEVER else when

    def state_counts(self) -> Mapping[str, int]:
        return {**{s.value: int(c) for s, c in zip(STATES, self._counts)}, "on_release": int(np.count_nonzero(self.on_release))}

    def health(self, idx: np.ndarray, kind: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Error rate, latency p95 and output statistic devices ``idx`` report with health ``kind``."""
        err, lat, out = self._error[idx].copy(), self._latency[idx].copy(), self._output[idx].copy()
        good, bad = kind == GOOD, kind == DEGRADED
        lat[good] *= 0.95
        err[bad] += 0.15
        lat[bad] *= 1.8
        out[bad] = 0.5
        return err, lat, out

    def views(self) -> list[DeviceView]:
        """Every device as last reported, one object each: for checks on small fleets."""
        release, previous = self._feed.rollout.release, self._feed.rollout.previous_release
        fleet = self.devices
        err, lat, out = self.health(np.arange(len(fleet)), self.health_kind)
        return [
            DeviceView(fleet.device_id(i), fleet.tags(i), fleet.facts(i), release if self.on_release[i] else previous,
                       STATES[self.state[i]], release if self.to_release[i] else previous,
                       HealthMetrics(float(err[i]), float(lat[i]), output_stat=float(out[i])))
            for i in range(len(fleet))
        ]

    # Device behaviour

    def _reports(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.state[idx], self.on_release[idx], self.to_release[idx], self.health_kind[idx]

    def _report(self, idx: np.ndarray, state: DeviceState) -> None:
        self._counts -= np.bincount(self.state[idx], minlength=len(STATES))
        self._counts[_CODE[state]] += len(idx)
        self.state[idx] = _CODE[state]
        self._changed[idx] = True

    def _wants(self, idx: np.ndarray, order: np.ndarray) -> np.ndarray:
        """Whether each order asks the device to do something it is not already doing."""
        on, installing = self.on_release[idx], self._installing[idx]
        gave_up = self.to_release[idx] & _FAILURE[self.state[idx]]
        install = (order == INSTALL) & ~on & ~installing & ~gave_up
        back = (order == ROLL_BACK) & (on | installing)
        return install | back

    def _checkin_delay(self, idx: np.ndarray) -> np.ndarray:
        # A poller at a random phase: the next check-in is anywhere within one period.
        rng = self._rng
        delay = rng.uniform(0.0, 1.0, len(idx)) * self.devices.checkin_s[idx]
        # Pilot devices sit in the lab, always online.
        offline = (rng.random(len(idx)) < self._config.faults.offline) & ~self.devices.pilot[idx]
        delay[offline] += rng.exponential(OFFLINE_MEAN_S, int(np.count_nonzero(offline)))
        return delay

    def _reboots(self, n: int, rate: float) -> np.ndarray:
        """Seconds lost to crashes: each try crashes with ``rate`` and costs a reboot."""
        extra = np.zeros(n)
        live = np.flatnonzero(self._rng.random(n) < rate)
        while len(live):
            extra[live] += self._rng.uniform(*REBOOT_S, len(live))
            live = live[self._rng.random(len(live)) < rate]
        return extra

    def _at(self, idx: np.ndarray, when: np.ndarray | float, step: int) -> None:
        self._next[idx] = when
        self._step[idx] = step

    def _on_pickup(self, idx: np.ndarray, t: np.ndarray) -> None:
        self._pickup[idx] = NEVER
        order = self._feed.order(idx)
        go = self._wants(idx, order)
        idx, t, order = idx[go], t[go], order[go]
        back = order == ROLL_BACK
        self._roll_back(idx[back], t[back])
        idx, t = idx[~back], t[~back]
        self._installing[idx] = True
        self._tries[idx] = 0
        self._notified[idx] = t
        self.started[idx] = True
        self.to_release[idx] = True
        self._report(idx, DeviceState.ASSIGNED)
        self._download(idx, t)

    def _roll_back(self, idx: np.ndarray, t: np.ndarray) -> None:
        self.rollback_orders += len(idx)
        self._installing[idx] = False
        self.to_release[idx] = False
        self._at(idx, NEVER, _NONE)  # the install in progress is dropped
        # Still on the previous release and not running the new one: drop the install, stay.
        stay = ~self.on_release[idx] & ~_SWITCHED[self.state[idx]]
        self._report(idx[stay], DeviceState.ROLLED_BACK)
        # Otherwise the previous release is still installed: switch back to it at once.
        back = idx[~stay]
        self._report(back, DeviceState.SWITCHING)
        self._at(back, t[~stay] + SWITCH_S, _ROLLBACK_DONE)

    def _on_step(self, idx: np.ndarray) -> None:
        t, step = self._next[idx], self._step[idx]
        for code, handler in (
            (_DOWNLOAD, VirtualFleet._download),
            (_VERIFY, VirtualFleet._verify),
            (_STAGED, VirtualFleet._staged),
            (_SWITCH, VirtualFleet._switch),
            (_TRIAL, VirtualFleet._trial),
            (_TRIAL_DONE, VirtualFleet._trial_done),
            (_ROLLBACK_DONE, VirtualFleet._rollback_done),
        ):
            mine = step == code
            if mine.any():
                handler(self, idx[mine], t[mine])

    def _download(self, idx: np.ndarray, t: np.ndarray) -> None:
        took = self._config.release_size / self.devices.link_bps[idx]
        # A crash mid-download costs a reboot; the download resumes where it stopped.
        took += self._reboots(len(idx), self._config.faults.crash_download)
        self._report(idx, DeviceState.DOWNLOADING)
        self._at(idx, t + took, _VERIFY)

    def _verify(self, idx: np.ndarray, t: np.ndarray) -> None:
        self._report(idx, DeviceState.VERIFYING)
        done = t + self._config.release_size / VERIFY_BPS
        corrupt = self._rng.random(len(idx)) < self._config.faults.corrupt
        self._at(idx[~corrupt], done[~corrupt], _STAGED)
        bad, done = idx[corrupt], done[corrupt]
        self._tries[bad] += 1
        out = self._tries[bad] >= MAX_VERIFY_TRIES
        self._installing[bad[out]] = False
        self._report(bad[out], DeviceState.FAILED)
        self._at(bad[out], NEVER, _NONE)
        self._at(bad[~out], done[~out], _DOWNLOAD)

    def _staged(self, idx: np.ndarray, t: np.ndarray) -> None:
        at = np.maximum(t, self._switch_times(self._notified[idx], self.devices.zone[idx]))
        later = at > t
        self._report(idx[later], DeviceState.WAITING_WINDOW)
        self._report(idx[~later], DeviceState.STAGED)
        self._at(idx, at, _SWITCH)

    def _switch(self, idx: np.ndarray, t: np.ndarray) -> None:
        self.switched_at[idx] = t
        # Power lost mid-switch: the journal brings the device back and the switch reruns.
        took = SWITCH_S + self._reboots(len(idx), self._config.faults.power_loss_switch)
        self._report(idx, DeviceState.SWITCHING)
        self._at(idx, t + took, _TRIAL)

    def _trial(self, idx: np.ndarray, t: np.ndarray) -> None:
        self.ran[idx] = True
        self._report(idx, DeviceState.TRIAL)
        self._at(idx, t + self._rng.uniform(*TRIAL_S, len(idx)), _TRIAL_DONE)

    def _trial_done(self, idx: np.ndarray, t: np.ndarray) -> None:
        cfg, rng = self._config, self._rng
        self._installing[idx] = False
        self._at(idx, NEVER, _NONE)
        bad = rng.random(len(idx)) < cfg.release_bad_rate * _FRAGILITY[self.devices.hardware[idx]]
        caught = bad & (rng.random(len(idx)) < cfg.bad_trial_failure)
        # The agent's own rollback: it stays on the previous release, its target stays.
        self._report(idx[caught], DeviceState.ROLLED_BACK)
        done = idx[~caught]
        self.on_release[done] = True
        self.health_kind[done] = np.where(bad[~caught], DEGRADED, GOOD)
        self._report(done, DeviceState.COMMITTED)

    def _rollback_done(self, idx: np.ndarray, t: np.ndarray) -> None:
        self._at(idx, NEVER, _NONE)
        self.on_release[idx] = False
        self.health_kind[idx] = BASELINE
        self._report(idx, DeviceState.ROLLED_BACK)
