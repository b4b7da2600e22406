"""Simulator settings: the fleet, the release, the faults and the plan, with their defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from edgeship.errors import UsageError
from edgeship.rollout import RolloutPolicy

# Monday 2025-06-02 00:00 UTC: a fixed start keeps runs with the same seed identical.
DEFAULT_START = datetime(2025, 6, 2, tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class Faults:
    """Fault rates: per attempt for crash/power-loss/corrupt, per device for slow-link/offline."""

    crash_download: float = 0.0  # agent crashes mid-download (resumes after reboot)
    power_loss_switch: float = 0.0  # power lost mid-switch (journal recovers, switch retried)
    slow_link: float = 0.0  # share of devices on a link 40x slower
    offline: float = 0.0  # chance a device is offline (hours) when it would check in
    corrupt: float = 0.0  # downloaded bytes fail verification (re-downloaded, 3 tries)

    def __post_init__(self) -> None:
        # A crashed download or switch is retried until it gets through: at 1 it never would.
        for name in ("crash_download", "power_loss_switch"):
            if getattr(self, name) >= 1:
                key = name.replace("_", "-")
                raise UsageError(f"fault {key}={getattr(self, name)}: every attempt would fail and the run never end",
                                 hint=f"give a rate below 1, e.g. {key}=0.5")

    @classmethod
    def parse(cls, text: str | None) -> Faults:
        """``"crash-download=0.01,offline=0.05"``."""
        if not text:
            return cls()
        known = {name.replace("_", "-"): name for name in cls.__dataclass_fields__}
        rates: dict[str, float] = {}
        for item in text.split(","):
            key, _, value = item.strip().partition("=")
            if key not in known:
                raise UsageError(f"unknown fault {key!r}", hint=f"known faults: {', '.join(sorted(known))}")
            try:
                rate = float(value)
            except ValueError as exc:
                raise UsageError(f"fault {key}={value!r}: the rate is not a number", hint="e.g. offline=0.05") from exc
            if not 0 <= rate <= 1:
                raise UsageError(f"fault {key}={value}: the rate must be between 0 and 1")
            rates[known[key]] = rate
        return cls(**rates)


@dataclass(frozen=True)
class SimConfig:
    devices: int = 10_000
    seed: int = 0
    # Share of devices on which the new release misbehaves (scaled by board fragility);
    # 0 is a good release. Of those, most fail their trial and the rest run degraded.
    release_bad_rate: float = 0.0
    bad_trial_failure: float = 0.8  # share of misbehaving devices whose trial catches it
    release_size: int = 300_000_000  # bytes to download
    min_ram: int = 2 << 30  # the release's requirement: small boards are skipped
    faults: Faults = Faults()
    policy: RolloutPolicy = field(default_factory=RolloutPolicy)
    pilot_share: float = 0.005
    tick: float = 300.0  # seconds between engine decisions, like a server's scheduler
    # Once a rollout is completed or aborted its answers start no new work, so the tail of
    # stragglers (devices offline for hours) is sampled this coarsely.
    settle_tick: float = 3600.0
    start: float = DEFAULT_START
    max_duration: float = 21 * 86400.0  # give up after three simulated weeks

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise UsageError("--devices must be at least 1")
        if not 0 <= self.release_bad_rate <= 1:
            raise UsageError("--release-bad-rate must be between 0 and 1")
        if self.tick <= 0:
            raise UsageError("the engine tick must be positive")
