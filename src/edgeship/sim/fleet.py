"""Virtual fleets: realistic mixes of hardware, time zones, links and check-in habits, as arrays.

A million devices are a handful of numpy arrays (one entry per device), not a million
objects; a device's tags, facts and ID are built only when someone asks for one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeship.rollout import DeviceFacts

GiB = 1 << 30


@dataclass(frozen=True)
class Hardware:
    name: str
    share: float  # of the fleet
    ram: int  # bytes
    arch: str
    accelerator: str | None
    latency_ms: float  # typical inference p95 on the previous release
    fragility: float  # how much likelier a bad release is to break on this board


# Roughly the boards of DESIGN.md; the Coral's 1 GiB makes it miss a 2 GiB requirement.
HARDWARE: tuple[Hardware, ...] = (
    Hardware("pi4", 0.22, 4 * GiB, "arm64", None, 900.0, 1.2),
    Hardware("pi5", 0.25, 8 * GiB, "arm64", None, 450.0, 1.0),
    Hardware("jetson-orin-nano", 0.2, 8 * GiB, "arm64", "cuda", 120.0, 0.8),
    Hardware("jetson-nano", 0.1, 4 * GiB, "arm64", "cuda", 300.0, 1.4),
    Hardware("npu-laptop", 0.18, 16 * GiB, "x86_64", "npu", 200.0, 0.7),
    Hardware("coral-dev", 0.05, 1 * GiB, "arm64", "edgetpu", 60.0, 1.0),
)

# (IANA zone, site tag, share of the fleet)
ZONES: tuple[tuple[str, str, float], ...] = (
    ("Europe/Berlin", "berlin", 0.22),
    ("Europe/London", "london", 0.1),
    ("America/New_York", "new-york", 0.15),
    ("America/Los_Angeles", "los-angeles", 0.1),
    ("America/Sao_Paulo", "sao-paulo", 0.05),
    ("Asia/Kolkata", "bangalore", 0.1),
    ("Asia/Tokyo", "tokyo", 0.1),
    ("Asia/Singapore", "singapore", 0.05),
    ("Australia/Sydney", "sydney", 0.08),
    ("UTC", "cloud-lab", 0.05),
)


@dataclass(frozen=True)
class Fleet:
    """What does not change about the simulated devices during a run, one array entry per device."""

    hardware: np.ndarray  # index into HARDWARE
    zone: np.ndarray  # index into ZONES
    link_bps: np.ndarray  # download speed, bytes per second
    checkin_s: np.ndarray  # mean seconds between check-ins
    pilot: np.ndarray  # bool: tagged ring=pilot

    def __len__(self) -> int:
        return len(self.hardware)

    @staticmethod
    def device_id(i: int) -> str:
        return f"sim-{i:06d}"

    def tags(self, i: int) -> dict[str, str]:
        return _tags(bool(self.pilot[i]), int(self.zone[i]), int(self.hardware[i]))

    def facts(self, i: int) -> DeviceFacts:
        return _facts(int(self.hardware[i]), int(self.zone[i]))

    def kinds(self) -> tuple[np.ndarray, np.ndarray]:
        """Devices alike in tags and facts: (one device of each kind, each device's kind)."""
        key = (self.pilot.astype(np.int64) * len(ZONES) + self.zone) * len(HARDWARE) + self.hardware
        _, first, kind = np.unique(key, return_index=True, return_inverse=True)
        return first, kind.ravel()

    def mix(self) -> dict[str, dict[str, int]]:
        """Hardware and time-zone counts, most common first, for the report."""
        return {
            "hardware": _most_common(self.hardware, [h.name for h in HARDWARE]),
            "timezones": _most_common(self.zone, [z[0] for z in ZONES]),
            "pilot": {"devices": int(np.count_nonzero(self.pilot))},
        }


def make_fleet(n: int, rng: np.random.Generator, pilot_share: float = 0.005, slow_link: float = 0.0) -> Fleet:
    """``n`` devices; a ``pilot_share`` of them (at least three) tagged ``ring=pilot``."""
    pilots = max(3, round(n * pilot_share)) if n >= 20 else 1
    hardware = _pick(rng, [h.share for h in HARDWARE], n)
    zone = _pick(rng, [z[2] for z in ZONES], n)
    # Median ~2.5 MB/s (20 Mbit/s) with a long tail; a slow link is a 2G/satellite modem.
    link = rng.lognormal(14.7, 0.8, n)
    link[rng.random(n) < slow_link] /= 40
    return Fleet(
        hardware=hardware,
        zone=zone,
        link_bps=link,
        checkin_s=rng.uniform(300.0, 900.0, n),
        pilot=np.arange(n) < pilots,
    )


def _pick(rng: np.random.Generator, shares: list[float], n: int) -> np.ndarray:
    cum = np.cumsum(shares)
    # The last bound is the total, so rounding in the shares never yields an index past the end.
    return np.searchsorted(cum, rng.random(n) * cum[-1], side="right").astype(np.int8)


def _tags(pilot: bool, zone: int, hardware: int) -> dict[str, str]:
    return {"ring": "pilot" if pilot else "main", "site": ZONES[zone][1], "hw": HARDWARE[hardware].name}


def _facts(hardware: int, zone: int) -> DeviceFacts:
    hw = HARDWARE[hardware]
    return DeviceFacts(ram=hw.ram, arch=hw.arch, accelerator=hw.accelerator, timezone=ZONES[zone][0])


def _most_common(codes: np.ndarray, names: list[str]) -> dict[str, int]:
    counts = np.bincount(codes, minlength=len(names))
    order = sorted(range(len(names)), key=lambda k: (-counts[k], k))
    return {names[k]: int(counts[k]) for k in order if counts[k]}
