"""The GGUF layout for deltas agrees with the gguf package's own reader."""

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
    header = [s for s in segs if s.kind is Kind.HEADER]
    tensors = [s for s in segs if s.kind is Kind.TENSOR]
    # The header's entries follow one another from byte 0 up to the tensor data.
    assert [s.offset for s in header] == [0, *(s.end for s in header[:-1])]
    assert header[-1].end == reader.data_offset
    keys = [k for k in reader.fields if not k.startswith("GGUF.")]
    assert [s.name for s in header] == ["gguf counts", *(f"kv:{k}" for k in keys), "tensor infos"]
    expected = [(t.name, t.data_offset, int(t.n_bytes), t.tensor_type.name) for t in reader.tensors]
    assert [(s.name, s.offset, s.length, s.dtype) for s in tensors] == expected
    assert {s.name: s.width for s in tensors} == {"w0": 4, "w1": 2, "w2": 34, "w3": 18, "w4": 4}


def test_truncated_header_is_a_format_error(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", {"w": np.ones((4, 32), np.float32)}, {"k": "v" * 100})
    short = tmp_path / "short.gguf"
    short.write_bytes(path.read_bytes()[:60])
    with pytest.raises(ValidationError, match="truncated"):
        regions(short)
