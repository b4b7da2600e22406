"""Pick, for each device profile, the best variant that fits (pure logic, no I/O).

A variant fits a profile when its estimated memory (model + runtime) stays within the
profile's usable memory less a headroom share kept free for everything the estimate does
not see (other processes, memory fragmentation, a longer prompt than planned).

"Best" is measured quality when every candidate has the same measure, in this order:
lowest KL divergence from the source model, else lowest perplexity, else most bits per
weight (quantization error shrinks with bits, so this is the honest guess without a text).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from edgeship.optimize.profiles import ARCH_ALIASES, Profile
from edgeship.release.manifest import Requirements

DEFAULT_HEADROOM = 0.10


@dataclass(frozen=True)
class Candidate:
    name: str  # "Q4_K_M", or the source's type ("F16") for the unquantized model
    bits_per_weight: float
    memory: int  # estimated bytes for the chosen context, runtime included
    kl_divergence: float | None = None
    perplexity: float | None = None


@dataclass(frozen=True)
class Choice:
    profile: str
    variant: str | None  # None: nothing fits
    needed: int | None  # bytes the chosen variant (or, if none fits, the smallest) needs
    budget: int  # bytes the profile allows
    reason: str


def budget(profile: Profile, headroom: float = DEFAULT_HEADROOM) -> int:
    return int(profile.usable_bytes * (1 - headroom))


def rank(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Best quality first, by the measure every candidate has."""
    if candidates and all(c.kl_divergence is not None for c in candidates):
        return sorted(candidates, key=lambda c: (c.kl_divergence, -c.bits_per_weight))
    if candidates and all(c.perplexity is not None for c in candidates):
        return sorted(candidates, key=lambda c: (c.perplexity, -c.bits_per_weight))
    return sorted(candidates, key=lambda c: -c.bits_per_weight)


def choose(candidates: Sequence[Candidate], profiles: Sequence[Profile], headroom: float = DEFAULT_HEADROOM) -> list[Choice]:
    """One choice per profile, in the profiles' order."""
    if not 0 <= headroom < 1:
        raise ValueError(f"headroom must be in [0, 1), got {headroom}")
    ranked = rank(candidates)
    choices = []
    for p in profiles:
        limit = budget(p, headroom)
        allowed = f"{p.name} allows {_gib(limit)} ({p.usable:.0%} of {_gib(p.ram)} less {headroom:.0%} headroom)"
        fitting = [c for c in ranked if c.memory <= limit]
        if not ranked:
            choices.append(Choice(p.name, None, None, limit, "no candidate variants"))
        elif not fitting:
            smallest = min(ranked, key=lambda c: c.memory)
            reason = f"none fits: the smallest, {smallest.name}, needs {_gib(smallest.memory)}; {allowed}"
            choices.append(Choice(p.name, None, smallest.memory, limit, reason))
        else:
            best = fitting[0]
            better = ranked[: ranked.index(best)]
            reason = f"needs {_gib(best.memory)}; {allowed}"
            if better:
                reason += f"; better {better[-1].name} needs {_gib(better[-1].memory)}"
            choices.append(Choice(p.name, best.name, best.memory, limit, reason))
    return choices


def release_requirements(needed: int, profiles: Sequence[Profile]) -> Requirements:
    """What a device needs to run a variant chosen for ``profiles``.

    min_ram is the least RAM on which the variant fits at all at the most generous usable
    share among those profiles (headroom is for choosing, not for refusing devices: a
    board reports a little less RAM than its label). arch lists the profiles' CPU
    architectures; the accelerator is left open because llama.cpp runs GGUF on the CPU.
    """
    if not profiles:
        raise ValueError("a release is chosen for at least one profile")
    usable = max(p.usable for p in profiles)
    arches = sorted({a for p in profiles for a in ARCH_ALIASES.get(p.arch, (p.arch,))})
    return Requirements(min_ram=math.ceil(needed / usable), arch=tuple(arches))


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"
