"""Federated aggregation over weight deltas: checks, norm clipping, FedAvg, Gaussian noise.

Pure logic over numpy arrays, no I/O. A delta maps a tensor name to ``tuned - base`` for
that tensor. The rules are Flower's (``flwr.server.strategy.aggregate.aggregate`` and
``DifferentialPrivacyServerSideFixedClipping``), written out here because Flower's package
pins older FastAPI/Starlette/Typer than edgeship runs on (docs/federated.md, "Why Flower's
rules but not Flower's transport"):

- FedAvg: the mean of the deltas weighted by each device's training sample count;
- fixed clipping: each delta is scaled down to an L2 norm (over all its tensors) of at most
  ``clip_norm`` before averaging;
- noise: N(0, (noise_multiplier * clip_norm / participants)^2) added to every aggregated
  weight, the server-side DP-FedAvg of McMahan et al. (2018).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edgeship.errors import UsageError

Delta = dict[str, np.ndarray]


class UpdateRejected(UsageError):
    """A device's update that must never enter an aggregate (NaN, absurd norm, wrong shapes or base)."""


@dataclass(frozen=True)
class Contribution:
    delta: Mapping[str, np.ndarray]
    samples: int  # training records behind it: FedAvg's weight


@dataclass(frozen=True)
class AggregateOptions:
    clip_norm: float | None = None  # L2 bound per update; None: no clipping
    noise_multiplier: float = 0.0  # Gaussian noise std in units of clip_norm / participants
    seed: int | None = None  # the noise's generator (tests); None: fresh entropy


def global_norm(delta: Mapping[str, np.ndarray]) -> float:
    """The L2 norm of all tensors of a delta together (float64, so large models do not overflow)."""
    return math.sqrt(sum(float(np.dot(a.ravel().astype(np.float64), a.ravel().astype(np.float64))) for a in delta.values()))


def check_update(shapes: Mapping[str, tuple[int, ...]], delta: Mapping[str, np.ndarray], samples: int, max_norm: float) -> float:
    """The update's norm, or UpdateRejected saying what is wrong with it."""
    if samples < 1:
        raise UpdateRejected(f"the update claims {samples} training samples", hint="an update needs at least one sample behind it")
    if set(delta) != set(shapes):
        extra, missing = sorted(set(delta) - set(shapes)), sorted(set(shapes) - set(delta))
        raise UpdateRejected(f"the update's tensors do not match the base model (extra {extra[:3]}, missing {missing[:3]})",
                             hint="train against the round's base model")
    for name, a in delta.items():
        if tuple(a.shape) != tuple(shapes[name]):
            raise UpdateRejected(f"tensor {name!r} has shape {tuple(a.shape)}, the base has {tuple(shapes[name])}",
                                 hint="train against the round's base model")
        if not np.isfinite(a).all():
            raise UpdateRejected(f"tensor {name!r} holds NaN or Inf values", hint="the device's training diverged; it should not upload")
    norm = global_norm(delta)
    if not math.isfinite(norm) or norm > max_norm:
        raise UpdateRejected(f"the update's L2 norm {norm:.4g} is over the round's limit of {max_norm:g}",
                             hint="lower the learning rate or the local steps, or raise --max-norm")
    return norm


def clip(delta: Mapping[str, np.ndarray], clip_norm: float) -> Delta:
    """``delta`` scaled to an L2 norm of at most ``clip_norm`` (unchanged when already within)."""
    norm = global_norm(delta)
    scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    return {k: (a * scale).astype(np.float32) for k, a in delta.items()}


def fedavg(contributions: Sequence[Contribution]) -> Delta:
    """The sample-weighted mean of the deltas (Flower's ``aggregate``)."""
    if not contributions:
        raise UsageError("no updates to aggregate")
    total = sum(c.samples for c in contributions)
    names = contributions[0].delta.keys()
    return {
        k: (sum(c.delta[k].astype(np.float64) * c.samples for c in contributions) / total).astype(np.float32)
        for k in names
    }


def aggregate(contributions: Sequence[Contribution], options: AggregateOptions = AggregateOptions()) -> Delta:
    """Clip each update (if asked), average them weighted by samples, add noise (if asked)."""
    if options.noise_multiplier and options.clip_norm is None:
        raise UsageError("noise needs a clipping norm", hint="give --clip with --noise: the noise is scaled to it")
    if options.clip_norm is not None:
        contributions = [Contribution(clip(c.delta, options.clip_norm), c.samples) for c in contributions]
    mean = fedavg(contributions)
    if options.noise_multiplier:
        assert options.clip_norm is not None
        std = options.noise_multiplier * options.clip_norm / len(contributions)
        rng = np.random.default_rng(options.seed)
        mean = {k: (a + rng.normal(0.0, std, a.shape)).astype(np.float32) for k, a in mean.items()}
    return mean
