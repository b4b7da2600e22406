"""What the engine reads: rollouts and the devices' last reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from edgeship.agent.machine import State as DeviceState
from edgeship.errors import RolloutError
from edgeship.release.manifest import Requirements
from edgeship.rollout.health import HealthMetrics
from edgeship.rollout.policy import OnFail, RolloutPolicy
from edgeship.rollout.selector import Selector

__all__ = ["FAILURE_STATES", "DeviceFacts", "DeviceState", "DeviceView", "Rollout", "RolloutState", "RolloutStatus"]

# Devices report the agent's own states (DESIGN.md, Device agent state machine); one that
# reports one of these for a release gave up on it.
FAILURE_STATES = frozenset({DeviceState.FAILED, DeviceState.ROLLED_BACK})


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """Hardware and place, as the device registered them."""

    ram: int | None = None  # bytes
    arch: str | None = None
    accelerator: str | None = None
    timezone: str = "UTC"  # IANA name; maintenance windows are in this zone


@dataclass(frozen=True, slots=True)
class DeviceView:
    """One device as the server last heard of it."""

    id: str
    tags: Mapping[str, str] = field(default_factory=dict)
    facts: DeviceFacts = DeviceFacts()
    current: str | None = None  # release it runs and has committed
    state: DeviceState = DeviceState.IDLE
    target: str | None = None  # release the state refers to (what it installs or gave up on)
    health: HealthMetrics | None = None  # metrics for ``current``
    # Unix time of its last check-in (None: unknown). A device that was ordered to install
    # and has not checked in since the rollout aborted may be installing it unreported.
    seen: float | None = None


class RolloutStatus(str, Enum):
    ROLLING = "rolling"  # devices of the current phase are installing
    BAKING = "baking"  # the phase is installed; watching it for the bake time
    PAUSED = "paused"
    ABORTED = "aborted"
    COMPLETED = "completed"

    @property
    def is_active(self) -> bool:
        return self in (RolloutStatus.ROLLING, RolloutStatus.BAKING)

    @property
    def is_final(self) -> bool:
        return self in (RolloutStatus.ABORTED, RolloutStatus.COMPLETED)


@dataclass(frozen=True)
class RolloutState:
    """Where a rollout is; the engine returns a new one, the caller stores it."""

    status: RolloutStatus = RolloutStatus.ROLLING
    phase: int = 0  # index into ``policy.phases``
    since: float = 0.0  # when this status began (Unix seconds)
    bake_started: float | None = None
    reason: str = ""  # why it paused or aborted
    rollback: bool = False  # aborted with an order to go back to the previous release
    # When install orders last went out to the reached phases (the phase began, or the
    # rollout resumed); None for rollouts stored before it was kept.
    ordered_since: float | None = None


@dataclass(frozen=True)
class Rollout:
    """A release going out to a target under a policy."""

    id: str
    release: str  # release ID (sha256 of the manifest)
    previous_release: str | None = None  # where a rollback order sends devices
    release_ref: str = ""  # "name@version", for people
    requirements: Requirements = field(default_factory=Requirements)
    target: Selector = field(default_factory=Selector)  # empty: the whole fleet
    policy: RolloutPolicy = field(default_factory=RolloutPolicy)
    state: RolloutState = RolloutState()

    def __post_init__(self) -> None:
        if self.policy.on_fail is OnFail.ROLLBACK and self.previous_release is None:
            raise RolloutError(
                f"rollout {self.id} rolls back on failure but names no previous release",
                hint="give the release to go back to, or use --on-fail pause",
            )
        if self.previous_release == self.release:
            raise RolloutError(f"rollout {self.id}: the previous release is the release being rolled out")
        if not 0 <= self.state.phase < len(self.policy.phases):
            raise RolloutError(f"rollout {self.id}: phase {self.state.phase} is not in its plan")

    @property
    def name(self) -> str:
        return self.release_ref or self.release[:12]
