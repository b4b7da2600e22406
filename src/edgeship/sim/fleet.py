"""Virtual fleets: realistic mixes of hardware, time zones, links and check-in habits."""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import accumulate

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


@dataclass(frozen=True, slots=True)
class VirtualDevice:
    """What does not change about a simulated device during a run."""

    id: str
    tags: dict[str, str]
    facts: DeviceFacts
    hardware: Hardware
    link_bps: float  # download speed, bytes per second
    checkin_s: float  # mean seconds between check-ins
    pilot: bool


def make_fleet(n: int, rng: random.Random, pilot_share: float = 0.005, slow_link: float = 0.0) -> list[VirtualDevice]:
    """``n`` devices; a ``pilot_share`` of them (at least three) tagged ``ring=pilot``."""
    pilots = max(3, round(n * pilot_share)) if n >= 20 else 1
    # Cumulative weights computed once: the same draws as ``weights=``, without re-adding per device.
    hw_cum = list(accumulate(h.share for h in HARDWARE))
    zone_cum = list(accumulate(z[2] for z in ZONES))
    # Devices of one board, place and ring share their (read-only) tags and facts.
    tags: dict[tuple[bool, str, str], dict[str, str]] = {}
    facts: dict[tuple[str, str], DeviceFacts] = {}
    out = []
    for i in range(n):
        hw = rng.choices(HARDWARE, cum_weights=hw_cum)[0]
        tz, site, _ = rng.choices(ZONES, cum_weights=zone_cum)[0]
        # Median ~2.5 MB/s (20 Mbit/s) with a long tail; a slow link is a 2G/satellite modem.
        link = rng.lognormvariate(14.7, 0.8)
        if rng.random() < slow_link:
            link /= 40
        pilot = i < pilots
        tag = tags.get((pilot, site, hw.name))
        if tag is None:
            tag = tags[pilot, site, hw.name] = {"ring": "pilot" if pilot else "main", "site": site, "hw": hw.name}
        fact = facts.get((hw.name, tz))
        if fact is None:
            fact = facts[hw.name, tz] = DeviceFacts(ram=hw.ram, arch=hw.arch, accelerator=hw.accelerator, timezone=tz)
        out.append(
            VirtualDevice(
                id=f"sim-{i:06d}",
                tags=tag,
                facts=fact,
                hardware=hw,
                link_bps=link,
                checkin_s=rng.uniform(300.0, 900.0),
                pilot=pilot,
            )
        )
    return out
