"""Health regression: a release's cohort against the previous release's.

Devices report inference metrics; the engine pools them per release and flags the new
release when it is worse than the one it replaces by more than a margin. Comparing with
the previous release, not with fixed limits, keeps the check meaningful on any hardware.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from sortedcontainers import SortedList


@dataclass(frozen=True, slots=True)
class HealthMetrics:
    """What one device last reported about the release it runs."""

    error_rate: float  # share of inferences that failed, 0..1
    latency_p95_ms: float
    memory_mb: float | None = None
    output_stat: float | None = None  # e.g. mean confidence; its shift is drift


@dataclass(frozen=True)
class HealthMargins:
    """How much worse than the previous release a release may be before it counts as a regression."""

    error_rate: float = 0.02  # absolute: +2 percentage points
    latency_p95: float = 0.25  # relative: +25 %
    drift: float = 0.20  # relative change of the mean output statistic
    min_devices: int = 10  # fewer reports on either side: no verdict yet


@dataclass(frozen=True)
class CohortHealth:
    """Pooled health of the devices running one release."""

    devices: int
    error_rate: float  # mean over devices
    latency_p95_ms: float  # median of the devices' p95: robust to a few broken clocks
    output_stat: float | None

    @classmethod
    def of(cls, samples: Iterable[HealthMetrics]) -> CohortHealth:
        return HealthPool.of(samples).cohort()


# Sums are kept exactly, as integers in units of the smallest float (2**-1074): a pool
# that devices join and leave one by one then gives the same float, bit for bit, as one
# summed afresh, so an incremental engine decides exactly like a full recompute.
_UNIT = 1 << 1074


def _exact(x: float) -> int:
    num, den = x.as_integer_ratio()  # den is a power of two
    return num << (1075 - den.bit_length())


def _exact_sum(values: np.ndarray) -> int:
    """``sum(map(_exact, values))`` for an array of finite floats, without a Python call per value."""
    mantissa, exponent = np.frexp(values)
    # value = m * 2**(exponent - 53) with m an integer below 2**53, so in units of 2**-1074
    # it is m << (exponent + 1021); values alike in exponent are summed as integers.
    m = np.ldexp(mantissa, 53).astype(np.int64)
    shift = exponent.astype(np.int64) + 1021
    total = 0
    low_shift = int(shift.min()) if len(shift) else 0
    for s in (np.flatnonzero(np.bincount(shift - low_shift)) + low_shift).tolist():
        part = m[shift == s]
        if s < 0:  # subnormal: its low bits are zeros, so the shift is exact
            part, s = part >> -s, 0
        # Halves of 26 bits: a sum of a million of them still fits an int64.
        high, low = part >> 26, part & ((1 << 26) - 1)
        total += ((int(high.sum()) << 26) + int(low.sum())) << s
    return total


class HealthPool:
    """A multiset of health reports that devices join and leave; ``cohort()`` pools it.

    Values must be finite (the server drops reports that are not).
    """

    __slots__ = ("_errors", "_latencies", "_outputs", "_with_output", "devices")

    def __init__(self) -> None:
        self.devices = 0
        self._errors = 0  # exact sum, see _UNIT
        self._outputs = 0
        self._with_output = 0
        self._latencies: SortedList = SortedList()

    @classmethod
    def of(cls, samples: Iterable[HealthMetrics]) -> HealthPool:
        pool = cls()
        pool.add_all(list(samples))
        return pool

    def add_all(self, items: list[HealthMetrics]) -> None:
        """``add`` each of ``items``, sorting the latencies once (a whole fleet at start)."""
        self.add_columns(
            np.array([m.error_rate for m in items], dtype=float),
            np.array([m.latency_p95_ms for m in items], dtype=float),
            np.array([m.output_stat for m in items if m.output_stat is not None], dtype=float),
        )

    def add_columns(self, errors: np.ndarray, latencies: np.ndarray, outputs: np.ndarray) -> None:
        """``add`` a batch of reports given as columns (``outputs``: the output statistics present)."""
        self.devices += len(errors)
        self._errors += _exact_sum(errors)
        self._latencies.update(latencies.tolist())
        self._with_output += len(outputs)
        self._outputs += _exact_sum(outputs)

    def remove_columns(self, errors: np.ndarray, latencies: np.ndarray, outputs: np.ndarray) -> None:
        """``remove`` a batch of reports given as columns, as ``add_columns`` took them."""
        self.devices -= len(errors)
        self._errors -= _exact_sum(errors)
        remove = self._latencies.remove
        for latency in latencies.tolist():
            remove(latency)
        self._with_output -= len(outputs)
        self._outputs -= _exact_sum(outputs)

    def add(self, m: HealthMetrics) -> None:
        self.devices += 1
        self._errors += _exact(m.error_rate)
        self._latencies.add(m.latency_p95_ms)
        if m.output_stat is not None:
            self._with_output += 1
            self._outputs += _exact(m.output_stat)

    def remove(self, m: HealthMetrics) -> None:
        self.devices -= 1
        self._errors -= _exact(m.error_rate)
        self._latencies.remove(m.latency_p95_ms)
        if m.output_stat is not None:
            self._with_output -= 1
            self._outputs -= _exact(m.output_stat)

    def cohort(self) -> CohortHealth:
        n = self.devices
        if not n:
            return CohortHealth(0, 0.0, 0.0, None)
        lat, mid = self._latencies, n // 2
        # statistics.median's arithmetic, on a list kept sorted.
        median = lat[mid] if n % 2 else (lat[mid - 1] + lat[mid]) / 2
        outputs = (self._outputs / _UNIT) / self._with_output if self._with_output else None
        return CohortHealth(n, (self._errors / _UNIT) / n, median, outputs)


def matched(candidate: Mapping[Hashable, HealthPool], baseline: Mapping[Hashable, HealthPool]) -> tuple[CohortHealth, CohortHealth]:
    """Pool both cohorts over the hardware classes they share, weighted by the candidate's mix.

    A pilot of five fast boards would otherwise look "faster" than a fleet of slow ones, and
    vice versa: only like-for-like hardware says anything about the release.
    """
    shared = [k for k in candidate if candidate[k].devices and k in baseline and baseline[k].devices]
    cand = {k: candidate[k].cohort() for k in shared}
    base = {k: baseline[k].cohort() for k in shared}
    weights = {k: candidate[k].devices for k in shared}
    return _weighted(cand, weights), dataclasses.replace(
        _weighted(base, weights), devices=sum(baseline[k].devices for k in shared)
    )


def _weighted(groups: Mapping[Hashable, CohortHealth], weights: Mapping[Hashable, int]) -> CohortHealth:
    total = sum(weights.values())
    if not total:
        return CohortHealth(0, 0.0, 0.0, None)
    outputs = [(g.output_stat, weights[k]) for k, g in groups.items() if g.output_stat is not None]
    out_w = sum(w for _, w in outputs)
    return CohortHealth(
        devices=total,
        error_rate=sum(g.error_rate * weights[k] for k, g in groups.items()) / total,
        latency_p95_ms=sum(g.latency_p95_ms * weights[k] for k, g in groups.items()) / total,
        output_stat=sum(v * w for v, w in outputs) / out_w if out_w else None,
    )


@dataclass(frozen=True)
class HealthVerdict:
    candidate: CohortHealth
    baseline: CohortHealth
    regressions: tuple[str, ...]  # empty: no regression (or not enough data)
    enough_data: bool

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)


def compare(candidate: CohortHealth, baseline: CohortHealth, margins: HealthMargins) -> HealthVerdict:
    """Flag each metric on which ``candidate`` is worse than ``baseline`` beyond its margin."""
    enough = min(candidate.devices, baseline.devices) >= margins.min_devices
    found: list[str] = []
    if enough:
        if candidate.error_rate > baseline.error_rate + margins.error_rate:
            found.append(
                f"error rate {candidate.error_rate:.1%} vs {baseline.error_rate:.1%} on the previous release "
                f"(margin +{margins.error_rate:.1%})"
            )
        if candidate.latency_p95_ms > baseline.latency_p95_ms * (1 + margins.latency_p95):
            found.append(
                f"latency p95 {candidate.latency_p95_ms:.0f} ms vs {baseline.latency_p95_ms:.0f} ms "
                f"(margin +{margins.latency_p95:.0%})"
            )
        if (
            candidate.output_stat is not None
            and baseline.output_stat
            and abs(candidate.output_stat - baseline.output_stat) > abs(baseline.output_stat) * margins.drift
        ):
            found.append(
                f"output drift: mean {candidate.output_stat:.3g} vs {baseline.output_stat:.3g} "
                f"(margin ±{margins.drift:.0%})"
            )
    return HealthVerdict(candidate, baseline, tuple(found), enough)
