"""Round trips and patch sizes on real GGUF and safetensors files, one scenario at a time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np
import pytest

from edgeship.delta import PatchStats
from edgeship.delta.codec import code_piece
from edgeship.samples.tensorfiles import (
    SCENARIOS,
    write_gguf,
    write_gguf_pair,
    write_safetensors,
)

Check = Callable[..., PatchStats]
KiB = 1024


def compressed_alone(path: Path, names: list[str]) -> int:
    """What the changed tensors cost compressed on their own (the floor for a patch)."""
    tensors = {t.name: t for t in gguf.GGUFReader(path).tensors}
    total = 0
    for name in names:
        t = tensors[name]
        width = np.dtype(t.data.dtype).itemsize
        total += len(code_piece(t.data.tobytes(), width, None).payload)
    return total


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_gguf_scenarios(scenario: str, tmp_path: Path, check_roundtrip: Check) -> None:
    old, new = tmp_path / "old.gguf", tmp_path / "new.gguf"
    changed = write_gguf_pair(old, new, scenario, size=1024 * KiB, vocab=20_000, seed=3)
    stats = check_roundtrip(old, new)
    assert stats.encoder == "gguf"
    sent = {s.name: s for s in stats.segments_sent}
    if scenario in ("finetune", "append"):
        assert set(changed) <= set(sent)
        assert stats.patch_size <= 1.05 * compressed_alone(new, changed) + 4 * KiB
    elif scenario in ("metadata", "reorder"):
        # The header holds 20k tokens (hundreds of KiB) but only a few bytes of it changed:
        # only the changed header entries are sent, each coded against its old version.
        assert stats.patch_size < 1 * KiB
        assert {s.kind for s in sent.values()} == {"header"}
        if scenario == "metadata":
            # (the tensor infos come along when the header's length, and so its padding, changed)
            assert set(sent) - {"tensor infos"} == {"kv:tokenizer.ggml.tokens", "kv:tokenizer.chat_template"}
            assert sent["kv:tokenizer.ggml.tokens"].size < 64  # the changed bytes of a ~300 KiB array
        else:
            assert set(sent) == {"tensor infos"}
    elif scenario == "full":
        assert all(sent[n].coding.startswith("sub") for n in changed)
        assert stats.patch_size < 0.3 * stats.target_size
    else:
        assert stats.patch_size < 0.9 * stats.target_size


def test_gguf_f32_f16_and_q8_0_tensors(tmp_path: Path, check_roundtrip: Check) -> None:
    rng = np.random.default_rng(0)
    weights = {n: rng.standard_normal((64, 256)).astype(np.float32) for n in ("f32", "f16", "q8")}
    types = {"f16": gguf.GGMLQuantizationType.F16, "q8": gguf.GGMLQuantizationType.Q8_0}
    meta = {"general.name": "mixed", "answer": 42, "pi": 3.14, "flag": True, "ids": [1, 2, 3]}
    old, new = tmp_path / "old.gguf", tmp_path / "new.gguf"
    write_gguf(old, weights, meta, types)
    nudged = {n: w * np.float32(1.0001) for n, w in weights.items()}
    write_gguf(new, nudged, meta, types)
    stats = check_roundtrip(old, new)
    codings = {s.name: s.coding for s in stats.segments_sent}
    assert codings["f32"].startswith("sub") and codings["f32"].endswith("/4")
    assert codings["f16"].startswith("sub") and codings["f16"].endswith("/2")
    assert set(codings) == {"f32", "f16", "q8"}


def test_safetensors_changed_tensor_and_metadata(tmp_path: Path, check_roundtrip: Check) -> None:
    rng = np.random.default_rng(1)
    tensors = {
        f"layer{i}.weight": rng.standard_normal((128, 128)).astype(np.float16) for i in range(10)
    }
    old, new = tmp_path / "old.safetensors", tmp_path / "new.safetensors"
    write_safetensors(old, tensors, {"version": "1"})
    changed = dict(tensors)
    changed["layer4.weight"] = (tensors["layer4.weight"] * 1.01).astype(np.float16)
    write_safetensors(new, changed, {"version": "2"})
    stats = check_roundtrip(old, new)
    assert stats.encoder == "safetensors"
    assert {s.name for s in stats.segments_sent} == {"header", "layer4.weight"}
    assert stats.patch_size < 0.8 * tensors["layer4.weight"].nbytes + 1 * KiB


def test_safetensors_files_load_with_the_reference_reader(tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    tensors = {"a": np.arange(6, dtype=np.int32).reshape(2, 3), "b": np.ones(3, np.float16)}
    write_safetensors(tmp_path / "m.safetensors", tensors, {"k": "v"})
    loaded = load_file(tmp_path / "m.safetensors")
    assert set(loaded) == {"a", "b"}
    assert np.array_equal(loaded["a"], tensors["a"])


def test_model_encoder_on_a_non_model_falls_back_to_generic(
    tmp_path: Path, check_roundtrip: Check
) -> None:
    old, new = tmp_path / "old.gguf", tmp_path / "new.gguf"
    old.write_bytes(b"GGUF" + bytes(1000))  # the magic, but no valid header behind it
    new.write_bytes(b"GGUF" + bytes(900) + b"x" * 100)
    assert check_roundtrip(old, new).encoder == "generic"
