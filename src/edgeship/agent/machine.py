"""The agent's state machine as pure functions: transitions, recovery, downgrade rule.

    idle → assigned → waiting_window → downloading → verifying → staged → switching
         → trial → committed | rolled_back        (any step before switching → failed)

Every step is journaled ``begin`` before its work and ``end`` after it, and every step's
work is idempotent, so recovering from a crash is always "run the step it was in again"
— except the trial: a release that keeps crashing the device during its trial is rolled
back rather than tried forever. Nothing here does I/O; `edgeship.agent.loop` does.
"""

from __future__ import annotations

from collections.abc import Sequence

from dataclasses import dataclass
from enum import Enum

from edgeship.errors import TrustError
from edgeship.release.manifest import parse_version


class State(str, Enum):
    IDLE = "idle"
    ASSIGNED = "assigned"
    WAITING_WINDOW = "waiting_window"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    STAGED = "staged"
    SWITCHING = "switching"
    TRIAL = "trial"
    COMMITTED = "committed"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (State.COMMITTED, State.ROLLED_BACK, State.FAILED)

    @property
    def before_switch(self) -> bool:
        """Nothing the device runs has been touched yet: the job may simply be abandoned."""
        return self in _PRE_SWITCH


_PRE_SWITCH = frozenset({State.ASSIGNED, State.WAITING_WINDOW, State.DOWNLOADING, State.VERIFYING, State.STAGED})
_FORWARD = {
    State.ASSIGNED: State.WAITING_WINDOW,
    State.WAITING_WINDOW: State.DOWNLOADING,
    State.DOWNLOADING: State.VERIFYING,
    State.VERIFYING: State.STAGED,
    State.STAGED: State.SWITCHING,
    State.SWITCHING: State.TRIAL,
}


class Phase(str, Enum):
    BEGIN = "begin"
    END = "end"


@dataclass(frozen=True)
class StepOutcome:
    """What a finished step reports: ``ok`` moves forward; otherwise ``retry`` or fail."""

    ok: bool = True
    reason: str | None = None
    retry: bool = False  # verifying found corrupt bytes: download again
    refused: bool = False  # untrusted, a downgrade, unfit: never retry this release by itself


def next_state(step: State, outcome: StepOutcome, *, verify_round: int, verify_attempts: int) -> State:
    """The step after ``step`` ended with ``outcome``."""
    if step.terminal:
        return State.IDLE
    if outcome.ok:
        return State.COMMITTED if step is State.TRIAL else _FORWARD[step]
    if step is State.TRIAL:
        return State.ROLLED_BACK
    if outcome.retry and step is State.VERIFYING and verify_round + 1 < verify_attempts:
        return State.DOWNLOADING
    if step is State.SWITCHING:
        # A switch that cannot complete is undone the same way a failed trial is.
        return State.ROLLED_BACK
    return State.FAILED


@dataclass(frozen=True)
class Resume:
    """Where a restarted agent picks up: run ``state`` (again), with ``reason`` if it is a rollback."""

    state: State
    reason: str | None = None


def recover(step: State, phase: Phase, outcome: StepOutcome | None, *, trial_round: int, trial_attempts: int,
            verify_round: int, verify_attempts: int) -> Resume | None:
    """What to do with the journal's last record after a restart; None: nothing was in flight.

    * a terminal step that ended: nothing to do;
    * any other step that began: run it again (every step is idempotent); a trial only
      ``trial_attempts`` times, because a release that crashes the device mid-trial must
      not be retried forever;
    * a step that ended: go on to the step its outcome leads to.
    """
    if step is State.IDLE or (step.terminal and phase is Phase.END):
        return None
    if phase is Phase.BEGIN:
        # ``trial_round`` counts trials begun, this one included.
        if step is State.TRIAL and trial_round >= trial_attempts:
            return Resume(State.ROLLED_BACK, f"the trial was interrupted {trial_round} times (crash or power loss)")
        # A terminal step keeps the reason it began with (why the job failed or rolled back).
        return Resume(step, outcome.reason if step.terminal and outcome is not None else None)
    assert outcome is not None, "an ended step always records its outcome"
    nxt = next_state(step, outcome, verify_round=verify_round, verify_attempts=verify_attempts)
    return Resume(nxt, outcome.reason if nxt in (State.ROLLED_BACK, State.FAILED) else None)


def check_downgrade(running: tuple[str, str] | None, offered: tuple[str, str], *, signed_rollback: Sequence[str],
                    rollback_ordered: bool) -> None:
    """Refuse to go to a lower version unless the running release's signed target allows it.

    ``running``/``offered`` are ``(name, version)``. The online server can only *order* a
    rollback (``rollback_ordered``); the offline-signed rollback versions of the release the
    device runs (``signed_rollback``) say which versions it may go back to.
    """
    if running is None or running[0] != offered[0]:
        return
    if parse_version(offered[1]) >= parse_version(running[1]):
        return
    name, version = offered
    if not rollback_ordered:
        raise TrustError(
            f"refusing {name}@{version}: the device runs {running[1]}, and going back needs a rollback order",
            hint="roll back through a rollout (the server then sends rollback: true); devices never downgrade on their own",
        )
    if version not in signed_rollback:
        allowed = ", ".join(signed_rollback) or "none"
        raise TrustError(
            f"refusing {name}@{version}: the signed target of {running[1]} allows a rollback only to {allowed}",
            hint="a server may order only the rollback the operator signed at push time; publish a fixed newer release instead",
        )
