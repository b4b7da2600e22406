"""The product of a training job: a weight update that can leave the device."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeship.delta import make_patch


@dataclass(frozen=True)
class TrainingMetrics:
    """What the job measured; no training text, only counts and figures."""

    samples: int  # training records read
    loss_before: float  # mean next-token loss (nats) on the training text
    loss_after: float
    metric_before: float  # held-out perplexity
    metric_after: float
    steps: int  # optimizer steps taken
    seconds: float  # wall time of the training itself


@dataclass(frozen=True)
class WeightUpdate:
    """An edgeship delta (`edgeship-delta/1`) from the base model file to the tuned one."""

    patch: Path
    base_digest: str  # sha256 of the base model file the patch applies to
    tuned_digest: str  # sha256 of the file the patch produces
    patch_size: int
    model_size: int  # size of the tuned model file, to compare the patch against
    metrics: TrainingMetrics

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["patch"] = str(self.patch)
        return data


def make_update(base: Path, tuned: Path, out: Path, metrics: TrainingMetrics) -> WeightUpdate:
    """Write the patch that turns ``base`` into ``tuned`` to ``out`` and describe it."""
    stats = make_patch(base, tuned, out)
    return WeightUpdate(out, stats.source_digest, stats.target_digest, stats.patch_size, stats.target_size, metrics)
