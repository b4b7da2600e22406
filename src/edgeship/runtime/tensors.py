"""Tensors in and out of HTTP: JSON nested lists and `.npy` files, checked against a model's inputs."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeship.errors import UsageError

NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: ``None`` in the shape is a free (symbolic) dimension."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype.name}

    def example(self) -> np.ndarray:
        """Zeros of this spec (free dimensions set to 1): warm-up input."""
        return np.zeros([d or 1 for d in self.shape], self.dtype)

    def check(self, array: np.ndarray) -> np.ndarray:
        """``array`` cast to this dtype, or UsageError naming the expected shape."""
        if array.ndim != len(self.shape) or any(want not in (None, got) for want, got in zip(self.shape, array.shape)):
            want = "x".join("?" if d is None else str(d) for d in self.shape)
            raise UsageError(
                f"input {self.name!r} has shape {list(array.shape)}, the model expects [{want}]",
                hint="'?' is any size; GET /v1/models lists every input's shape",
            )
        if array.dtype == self.dtype:
            return array
        if not np.can_cast(array.dtype, self.dtype, casting="same_kind"):
            raise UsageError(f"input {self.name!r} is {array.dtype.name}, the model expects {self.dtype.name}")
        return array.astype(self.dtype)


def check_inputs(specs: Sequence[TensorSpec], given: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every declared input present, nothing unknown, each of the right shape and dtype."""
    names = [s.name for s in specs]
    unknown = sorted(set(given) - set(names))
    missing = [n for n in names if n not in given]
    if unknown or missing:
        raise UsageError(
            f"the model takes inputs {names}; "
            + "; ".join(p for p in (f"missing {missing}" if missing else "", f"unknown {unknown}" if unknown else "") if p),
            hint="send one tensor per model input, by name",
        )
    return {s.name: s.check(given[s.name]) for s in specs}


def from_json(name: str, value: Any, dtype: np.dtype) -> np.ndarray:
    try:
        return np.asarray(value, dtype=dtype)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"input {name!r} is not a rectangular array of numbers: {exc}",
                         hint="send nested JSON lists, one level per dimension") from exc


def from_npy(name: str, data: bytes) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)  # pickles would run code from the request
    except (ValueError, OSError, EOFError) as exc:
        raise UsageError(f"upload {name!r} is not a readable .npy file: {exc}",
                         hint="write it with numpy.save; object arrays are refused") from exc
    if not isinstance(array, np.ndarray):
        raise UsageError(f"upload {name!r} is an .npz archive, not one .npy array", hint="upload one .npy file per input")
    return array


def to_json(array: np.ndarray) -> dict[str, Any]:
    return {"shape": list(array.shape), "dtype": array.dtype.name, "data": array.tolist()}


def summary(array: np.ndarray) -> dict[str, Any]:
    """A few numbers that stand for a tensor too big to publish whole."""
    flat = array.astype(np.float64, copy=False).ravel()
    stats = {"min": float(flat.min()), "max": float(flat.max()), "mean": float(flat.mean())} if flat.size else {}
    return {"shape": list(array.shape), "dtype": array.dtype.name, **stats}
