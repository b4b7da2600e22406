"""ONNX models: initializers inside the protobuf and in external-data files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeship.delta import PatchStats
from edgeship.errors import ValidationError
from edgeship.delta.onnx import regions
from edgeship.samples.tensorfiles import write_onnx

Check = Callable[..., PatchStats]


def _weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {
        f"conv{i}.weight": rng.standard_normal((64, 64)).astype(np.float32) for i in range(8)
    }
    out["embed"] = rng.standard_normal((256, 32)).astype(np.float16)
    out["steps"] = np.arange(100, dtype=np.int64)
    return out


def _release_pair(tmp_path: Path, external: bool) -> tuple[Path, Path, dict[str, np.ndarray]]:
    weights = _weights(0)
    changed = {**weights, "conv3.weight": weights["conv3.weight"] * np.float32(1.001)}
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    old = write_onnx(tmp_path / "v1" / "model.onnx", weights, external_data=external)
    new = write_onnx(tmp_path / "v2" / "model.onnx", changed, external_data=external)
    onnx.checker.check_model(str(new))
    return old, new, weights


def test_inline_initializers_are_tensors(tmp_path: Path, check_roundtrip: Check) -> None:
    old, new, weights = _release_pair(tmp_path, external=False)
    names = {s.name for s in regions(new) if s.kind.value == "tensor"}
    assert names == set(weights)
    stats = check_roundtrip(old, new)
    assert stats.encoder == "onnx"
    sent = {s.name: s for s in stats.segments_sent}
    assert sent["conv3.weight"].coding in ("sub/4", "sub-nibbles/4")
    assert stats.patch_size < 0.6 * weights["conv3.weight"].nbytes


def test_external_data_file_is_split_by_the_model_beside_it(
    tmp_path: Path, check_roundtrip: Check
) -> None:
    old, new, weights = _release_pair(tmp_path, external=True)
    data_old, data_new = old.with_name("model.onnx.data"), new.with_name("model.onnx.data")
    assert {s.name for s in regions(data_new)} == set(weights)
    stats = check_roundtrip(data_old, data_new)
    assert stats.encoder == "onnx"
    assert [s.name for s in stats.segments_sent] == ["conv3.weight"]
    assert check_roundtrip(old, new).encoder == "onnx"


def test_garbage_with_onnx_suffix_is_refused_by_the_walker(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x3a\xff\xff\xff\xff\x0f" + bytes(10))
    with pytest.raises(ValidationError):
        regions(bad)
