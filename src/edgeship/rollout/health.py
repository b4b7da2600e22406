"""Health regression: a release's cohort against the previous release's.

Devices report inference metrics; the engine pools them per release and flags the new
release when it is worse than the one it replaces by more than a margin. Comparing with
the previous release, not with fixed limits, keeps the check meaningful on any hardware.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass


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
        items = list(samples)
        if not items:
            return cls(0, 0.0, 0.0, None)
        outputs = [s.output_stat for s in items if s.output_stat is not None]
        return cls(
            devices=len(items),
            error_rate=sum([s.error_rate for s in items]) / len(items),
            latency_p95_ms=statistics.median([s.latency_p95_ms for s in items]),
            output_stat=sum(outputs) / len(outputs) if outputs else None,
        )


def matched(
    candidate: Mapping[Hashable, Sequence[HealthMetrics]], baseline: Mapping[Hashable, Sequence[HealthMetrics]]
) -> tuple[CohortHealth, CohortHealth]:
    """Pool both cohorts over the hardware classes they share, weighted by the candidate's mix.

    A pilot of five fast boards would otherwise look "faster" than a fleet of slow ones, and
    vice versa: only like-for-like hardware says anything about the release.
    """
    shared = [k for k in candidate if candidate[k] and baseline.get(k)]
    cand = {k: CohortHealth.of(candidate[k]) for k in shared}
    base = {k: CohortHealth.of(baseline[k]) for k in shared}
    weights = {k: len(candidate[k]) for k in shared}
    return _weighted(cand, weights), dataclasses.replace(
        _weighted(base, weights), devices=sum(len(baseline[k]) for k in shared)
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
