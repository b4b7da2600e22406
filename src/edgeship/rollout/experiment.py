"""A/B experiments: two releases on two stable cohorts, and whether one is really better.

Install success is compared with a two-proportion z-test; latency and feedback ratings
with a Mann-Whitney U test (latencies are skewed, ratings are ordinal with many ties, so
a rank test fits both). Three tests share the error budget (Bonferroni).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from edgeship.errors import RolloutError
from edgeship.rollout.cohort import cohort_value
from edgeship.rollout.model import FAILURE_STATES, DeviceView
from edgeship.rollout.selector import Selector

A, B = "A", "B"
TOO_EARLY = "too early to tell"


@dataclass(frozen=True)
class Experiment:
    id: str
    release_a: str
    release_b: str
    split: float = 0.5  # share of the targeted devices on A
    target: Selector = field(default_factory=Selector)
    started: float = 0.0  # Unix seconds
    duration: float = 86400.0  # seconds; the verdict is final only after it
    alpha: float = 0.05  # family-wise false-positive rate over all metrics
    min_samples: int = 20  # per arm and metric, below which a metric is not tested

    def __post_init__(self) -> None:
        if not 0 < self.split < 1:
            raise RolloutError(f"experiment split {self.split:.0%} leaves an arm empty", hint="use e.g. --split 50")
        if self.release_a == self.release_b:
            raise RolloutError("an experiment needs two different releases")

    def arm(self, device_id: str) -> str:
        """"A" or "B", stable for the experiment's life: the same hash as rollout cohorts."""
        return A if cohort_value(self.id, device_id) < self.split else B

    def release_of(self, device_id: str) -> str:
        return self.release_a if self.arm(device_id) == A else self.release_b

    def release_for(self, d: DeviceView) -> str | None:
        """The device's release, or None when the experiment does not target it."""
        return self.release_of(d.id) if self.target.matches(d.id, d.tags) else None

    def assign(self, devices: Iterable[DeviceView]) -> dict[str, str]:
        """The release for every targeted device."""
        return Arms(self, devices).releases


class Arms:
    """An experiment's release for each targeted device, kept up to date one device report at a time.

    Like a rollout's ``Tally``: built once from the fleet, then fed only the devices that
    changed, so a caller's work follows the changes, not the fleet.
    """

    def __init__(self, experiment: Experiment, devices: Iterable[DeviceView] = ()) -> None:
        self.experiment = experiment
        self.releases: dict[str, str] = {}
        for d in devices:
            self.update(d)

    def update(self, d: DeviceView) -> None:
        """Take ``d`` as the device's latest report (a new device or a changed one)."""
        release = self.experiment.release_for(d)
        if release is None:
            self.releases.pop(d.id, None)
        else:
            self.releases[d.id] = release

    def discard(self, device_id: str) -> None:
        """Forget a device (decommissioned)."""
        self.releases.pop(device_id, None)


@dataclass(frozen=True)
class ArmData:
    installs_ok: int = 0
    installs_failed: int = 0
    latencies_ms: Sequence[float] = ()
    ratings: Sequence[float] = ()  # user feedback, e.g. 1-5


@dataclass(frozen=True)
class Comparison:
    metric: str
    test: str
    a: float  # A's value: success rate, median latency or mean rating
    b: float
    p_value: float | None  # None: not enough samples
    better: str | None  # A, B, or None when not significant


@dataclass(frozen=True)
class ExperimentVerdict:
    verdict: str  # "A better", "B better" or "too early to tell"
    reason: str
    comparisons: tuple[Comparison, ...]


def collect(
    experiment: Experiment, devices: Iterable[DeviceView], ratings: Mapping[str, Sequence[float]] | None = None
) -> tuple[ArmData, ArmData]:
    """Each arm's installs, latency reports and ratings (keyed by device) from the fleet."""
    data: dict[str, dict[str, list[float]]] = {arm: {"ok": [], "failed": [], "lat": [], "rate": []} for arm in (A, B)}
    for d in devices:
        if not experiment.target.matches(d.id, d.tags):
            continue
        arm, release = experiment.arm(d.id), experiment.release_of(d.id)
        bucket = data[arm]
        if d.current == release:
            bucket["ok"].append(1)
            if d.health is not None:
                bucket["lat"].append(d.health.latency_p95_ms)
            bucket["rate"].extend((ratings or {}).get(d.id, ()))
        elif d.target == release and d.state in FAILURE_STATES:
            bucket["failed"].append(1)
    a, b = (ArmData(len(x["ok"]), len(x["failed"]), x["lat"], x["rate"]) for x in (data[A], data[B]))
    return a, b


def evaluate(experiment: Experiment, a: ArmData, b: ArmData, now: float) -> ExperimentVerdict:
    """Which release is better, with the numbers; "too early" until the evidence agrees."""
    comparisons = (
        _installs(a, b, experiment.min_samples),
        _ranks("latency", a.latencies_ms, b.latencies_ms, experiment.min_samples, lower_is_better=True),
        _ranks("rating", a.ratings, b.ratings, experiment.min_samples, lower_is_better=False),
    )
    tested = [c for c in comparisons if c.p_value is not None]
    level = experiment.alpha / max(1, len(tested))
    judged = tuple(
        Comparison(c.metric, c.test, c.a, c.b, c.p_value, c.better if c.p_value is not None and c.p_value < level else None)
        for c in comparisons
    )
    winners = {c.better for c in judged if c.better}
    left = experiment.started + experiment.duration - now
    if not tested:
        reason = f"fewer than {experiment.min_samples} samples per arm on every metric"
    elif len(winners) > 1:
        reason = "metrics disagree: " + ", ".join(f"{c.metric} favours {c.better}" for c in judged if c.better)
    elif not winners:
        reason = f"no significant difference at alpha {experiment.alpha:g}"
    else:
        (winner,) = winners
        why = ", ".join(f"{c.metric} (p={c.p_value:.2g})" for c in judged if c.better)
        return ExperimentVerdict(f"{winner} better", f"{winner} is better on {why}", judged)
    if left > 0:
        reason += f"; {left / 3600:.1f} h of the experiment left"
    return ExperimentVerdict(TOO_EARLY, reason, judged)


def _installs(a: ArmData, b: ArmData, min_samples: int) -> Comparison:
    na, nb = a.installs_ok + a.installs_failed, b.installs_ok + b.installs_failed
    pa = a.installs_ok / na if na else 0.0
    pb = b.installs_ok / nb if nb else 0.0
    if min(na, nb) < min_samples:
        return Comparison("install success", "two-proportion z", pa, pb, None, None)
    pooled = (a.installs_ok + b.installs_ok) / (na + nb)
    se = math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    p = 1.0 if se == 0 else math.erfc(abs(pa - pb) / se / math.sqrt(2))
    return Comparison("install success", "two-proportion z", pa, pb, p, A if pa > pb else B)


def _ranks(metric: str, xa: Sequence[float], xb: Sequence[float], min_samples: int, lower_is_better: bool) -> Comparison:
    summary = np.median if lower_is_better else np.mean
    va = float(summary(xa)) if len(xa) else 0.0
    vb = float(summary(xb)) if len(xb) else 0.0
    if min(len(xa), len(xb)) < min_samples:
        return Comparison(metric, "Mann-Whitney U", va, vb, None, None)
    p, a_higher = mann_whitney(xa, xb)
    better = (B if a_higher else A) if lower_is_better else (A if a_higher else B)
    return Comparison(metric, "Mann-Whitney U", va, vb, p, better)


def mann_whitney(xa: Sequence[float], xb: Sequence[float]) -> tuple[float, bool]:
    """Two-sided p-value (normal approximation, tie-corrected) and whether A tends higher."""
    n1, n2 = len(xa), len(xb)
    values = np.concatenate([np.asarray(xa, float), np.asarray(xb, float)])
    n = n1 + n2
    # Average ranks for ties (what scipy.stats.rankdata calls "average").
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(n)
    ranks[order] = np.arange(1, n + 1)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    rank_sum = np.bincount(inverse, weights=ranks)
    ranks = (rank_sum / counts)[inverse]
    u1 = float(ranks[:n1].sum()) - n1 * (n1 + 1) / 2
    mean = n1 * n2 / 2
    ties = float((counts**3 - counts).sum())
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:  # every value equal
        return 1.0, False
    z = (abs(u1 - mean) - 0.5) / math.sqrt(var)  # continuity correction
    return min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2))), u1 > mean
