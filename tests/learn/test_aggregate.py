"""Federated aggregation against a plain numpy reference, and the checks that keep bad updates out."""

from __future__ import annotations

import numpy as np
import pytest

from edgeship.errors import UsageError
from edgeship.learn.aggregate import AggregateOptions, Contribution, UpdateRejected, aggregate, check_update, clip, global_norm

SHAPES = {"a": (4, 3), "b": (5,)}


def _deltas(n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()} for _ in range(n)]


def test_fedavg_is_the_sample_weighted_mean() -> None:
    deltas, samples = _deltas(3), [10, 30, 60]
    got = aggregate([Contribution(d, s) for d, s in zip(deltas, samples)])
    for k in SHAPES:
        ref = np.average(np.stack([d[k] for d in deltas]), axis=0, weights=samples)
        np.testing.assert_allclose(got[k], ref, rtol=1e-6)


def test_clipping_bounds_each_update_before_averaging() -> None:
    deltas, samples = _deltas(2, seed=1), [1, 3]
    deltas[0] = {k: v * 100 for k, v in deltas[0].items()}  # far over the bound: scaled down to it
    got = aggregate([Contribution(d, s) for d, s in zip(deltas, samples)], AggregateOptions(clip_norm=1.0))
    ref_clipped = []
    for d in deltas:
        norm = np.sqrt(sum(np.sum(v.astype(np.float64) ** 2) for v in d.values()))
        ref_clipped.append({k: v * min(1.0, 1.0 / norm) for k, v in d.items()})
    for k in SHAPES:
        ref = (ref_clipped[0][k] * 1 + ref_clipped[1][k] * 3) / 4
        np.testing.assert_allclose(got[k], ref, rtol=1e-5)
    assert global_norm(clip(deltas[0], 1.0)) == pytest.approx(1.0, rel=1e-5)


def test_noise_is_gaussian_scaled_to_clip_over_participants() -> None:
    deltas = [{"a": np.zeros((200, 200), np.float32)} for _ in range(4)]
    got = aggregate([Contribution(d, 1) for d in deltas], AggregateOptions(clip_norm=2.0, noise_multiplier=1.0, seed=7))
    assert float(np.std(got["a"])) == pytest.approx(1.0 * 2.0 / 4, rel=0.02)
    assert abs(float(np.mean(got["a"]))) < 0.01
    with pytest.raises(UsageError, match="noise needs a clipping norm"):
        aggregate([Contribution(deltas[0], 1)], AggregateOptions(noise_multiplier=1.0))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"a": np.full((4, 3), np.nan, np.float32), "b": np.zeros(5, np.float32)}, "NaN or Inf"),
        ({"a": np.zeros((4, 3), np.float32), "b": np.array([0, 0, np.inf, 0, 0], np.float32)}, "NaN or Inf"),
        ({"a": np.full((4, 3), 1e6, np.float32), "b": np.zeros(5, np.float32)}, "L2 norm"),
        ({"a": np.zeros((3, 4), np.float32), "b": np.zeros(5, np.float32)}, "shape"),
        ({"a": np.zeros((4, 3), np.float32)}, "do not match the base"),
    ],
)
def test_bad_updates_are_rejected(bad: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(UpdateRejected, match=message):
        check_update(SHAPES, bad, 10, max_norm=100.0)


def test_an_update_needs_samples() -> None:
    with pytest.raises(UpdateRejected, match="0 training samples"):
        check_update(SHAPES, _deltas(1)[0], 0, max_norm=100.0)
