"""The seam between the simulator's clock and the devices it drives.

The in-process virtual fleet implements it today; a fleet of real agents talking HTTP to
a real server can implement the same methods later and reuse the runner, the
timeline and the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from edgeship.rollout import Decision, DeviceView


class FleetBackend(Protocol):
    started: set[str]  # devices that picked up the new release
    ran: set[str]  # devices that switched to it (ran it, at least for a trial)
    rollback_orders: int  # rollback orders devices carried out

    def views(self) -> Sequence[DeviceView]:
        """Every device as last reported (what a server's device registry holds)."""

    def changed(self) -> Sequence[DeviceView]:
        """The devices whose report changed since the last call (the engine's tally reads only these)."""

    def apply(self, decision: Decision, now: float) -> None:
        """Publish the engine's assignments; devices pick them up at their next check-in."""

    def run_until(self, t: float) -> None:
        """Let the devices act until time ``t``."""

    def next_event(self) -> float | None:
        """When the next device will act by itself, or None when all are quiet."""

    def state_counts(self) -> Mapping[str, int]:
        """Devices per agent state (plus ``on_release``: devices running the new release)."""
