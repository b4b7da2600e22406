"""Rollout plans: pilot group, percentage stages, bake times, failure budgets, windows."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from edgeship.errors import RolloutError, UsageError
from edgeship.rollout.health import HealthMargins
from edgeship.rollout.selector import Selector
from edgeship.rollout.window import MaintenanceWindow
from edgeship.units import parse_duration

DEFAULT_PERCENTS = (1.0, 10.0, 50.0, 100.0)
DEFAULT_BAKE = 1800.0  # seconds (30 min)
DEFAULT_MAX_FAILURE = 0.02  # share of the stage's devices


class OnFail(str, Enum):
    PAUSE = "pause"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class Stage:
    """A percentage of the targeted fleet, watched for ``bake`` seconds once installed."""

    percent: float
    bake: float = DEFAULT_BAKE  # seconds
    max_failure: float = DEFAULT_MAX_FAILURE  # share of devices assigned so far that may fail


@dataclass(frozen=True)
class Phase:
    """One step the engine walks through: the pilot group or a percentage stage."""

    name: str
    percent: float | None  # None: the pilot group
    bake: float  # seconds
    max_failure: float  # share of failed devices tolerated
    max_pending: float  # share of devices still installing that may be left behind


@dataclass(frozen=True)
class RolloutPolicy:
    """How a rollout proceeds and when it stops. Defaults follow DESIGN.md (Rollouts)."""

    # Devices that get the release first and must all succeed; None: no pilot.
    pilot: Selector | None = field(default_factory=lambda: Selector.parse("ring=pilot"))
    pilot_bake: float = DEFAULT_BAKE  # seconds
    stages: tuple[Stage, ...] = tuple(Stage(p) for p in DEFAULT_PERCENTS)
    # Some devices are always offline; waiting for the last one would stall the fleet, so a
    # stage may advance with this share still installing (they keep their assignment).
    max_pending: float = 0.05
    health: HealthMargins = field(default_factory=HealthMargins)
    on_fail: OnFail = OnFail.PAUSE
    window: MaintenanceWindow | None = None  # device local time; None: switch any time
    notice: float = 0.0  # seconds a device is told before it switches

    def __post_init__(self) -> None:
        if not self.stages:
            raise RolloutError("a rollout plan needs at least one stage", hint="e.g. --stages 1,10,50,100")
        percents = [s.percent for s in self.stages]
        if any(not 0 < p <= 100 for p in percents) or percents != sorted(set(percents)):
            raise RolloutError(
                f"stages {format_percents(percents)} must be increasing percentages in (0, 100]",
                hint="e.g. --stages 1,10,50,100",
            )
        for s in self.stages:
            if s.bake < 0 or not 0 <= s.max_failure < 1:
                raise RolloutError(
                    f"stage {s.percent:g}%: bake must be >= 0 and max failure in [0, 1)",
                    hint="e.g. --bake 30m --max-failure 2%",
                )
        if not 0 <= self.max_pending < 1 or self.notice < 0 or self.pilot_bake < 0:
            raise RolloutError("max pending must be in [0, 1), notice and pilot bake >= 0")

    @property
    def phases(self) -> tuple[Phase, ...]:
        """The pilot (if any) then each stage; the pilot tolerates no failure and no straggler."""
        steps = [Phase("pilot", None, self.pilot_bake, 0.0, 0.0)] if self.pilot is not None else []
        steps += [Phase(f"{s.percent:g}%", s.percent, s.bake, s.max_failure, self.max_pending) for s in self.stages]
        return tuple(steps)

    @classmethod
    def from_options(
        cls,
        *,
        stages: str | None = None,
        bake: str | None = None,
        max_failure: str | None = None,
        pilot: str | None = "ring=pilot",
        window: str | None = None,
        notice: str | None = None,
        on_fail: str = "pause",
    ) -> RolloutPolicy:
        """Build a policy from the operator's flags (``--stages 1,10,50,100 --bake 30m …``)."""
        bake_s = parse_duration(bake) if bake else DEFAULT_BAKE
        budget = parse_share(max_failure) if max_failure else DEFAULT_MAX_FAILURE
        percents = parse_percents(stages) if stages else DEFAULT_PERCENTS
        try:
            fail = OnFail(on_fail)
        except ValueError as exc:
            raise UsageError(f"--on-fail {on_fail!r} not understood", hint="use pause or rollback") from exc
        return cls(
            pilot=Selector.parse(pilot) if pilot else None,
            pilot_bake=bake_s,
            stages=tuple(Stage(p, bake_s, budget) for p in percents),
            on_fail=fail,
            window=MaintenanceWindow.parse(window) if window else None,
            notice=parse_duration(notice) if notice else 0.0,
        )


def parse_percents(text: str) -> tuple[float, ...]:
    """``"1,10,50,100"`` → (1.0, 10.0, 50.0, 100.0)."""
    try:
        return tuple(float(p.strip().rstrip("%")) for p in text.split(","))
    except ValueError as exc:
        raise UsageError(f"stages {text!r} not understood", hint="write percentages, e.g. 1,10,50,100") from exc


def parse_share(text: str) -> float:
    """``"2%"`` → 0.02, ``"0.02"`` → 0.02."""
    body = text.strip()
    try:
        value = float(body[:-1]) / 100 if body.endswith("%") else float(body)
    except ValueError as exc:
        raise UsageError(f"share {text!r} not understood", hint="write e.g. 2% or 0.02") from exc
    if not 0 <= value < 1:
        raise UsageError(f"share {text!r} must be at least 0% and below 100%")
    return value


def format_percents(percents: list[float] | tuple[float, ...]) -> str:
    return ",".join(f"{p:g}" for p in percents)
