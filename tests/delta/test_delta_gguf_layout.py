"""The GGUF header walker agrees with the gguf package's own reader."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from edgeship.delta.gguf import regions
from edgeship.delta.listing import Kind
from edgeship.errors import ValidationError
from edgeship.samples.tensorfiles import write_gguf


def test_layout_matches_gguf_reader(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    weights = {f"w{i}": rng.standard_normal((8 * (i + 1), 64)).astype(np.float32) for i in range(5)}
    types = {"w1": gguf.GGMLQuantizationType.F16, "w2": gguf.GGMLQuantizationType.Q8_0,
             "w3": gguf.GGMLQuantizationType.Q4_0}  # fmt: skip
    meta = {
        "tokenizer.ggml.tokens": [f"t{i}" for i in range(3000)],
        "tokenizer.ggml.scores": [float(i) for i in range(3000)],
        "general.alignment": 64,
        "general.name": "layout",
        "big": 2**40,
    }
    path = write_gguf(tmp_path / "m.gguf", weights, meta, types)
    reader = gguf.GGUFReader(path)
    segs = regions(path)
    assert segs[0].kind is Kind.HEADER and segs[0].length == reader.data_offset
    expected = [(t.name, t.data_offset, int(t.n_bytes), t.tensor_type.name) for t in reader.tensors]
    assert [(s.name, s.offset, s.length, s.dtype) for s in segs[1:]] == expected
    assert {s.name: s.width for s in segs[1:]} == {"w0": 4, "w1": 2, "w2": 34, "w3": 18, "w4": 4}


def test_truncated_header_is_a_format_error(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", {"w": np.ones((4, 32), np.float32)}, {"k": "v" * 100})
    short = tmp_path / "short.gguf"
    short.write_bytes(path.read_bytes()[:60])
    with pytest.raises(ValidationError, match="truncated"):
        regions(short)
