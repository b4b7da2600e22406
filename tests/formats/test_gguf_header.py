"""The one GGUF header reader: agrees with the gguf package, skips long arrays, reads the real model."""

from __future__ import annotations

import time
from pathlib import Path

import gguf
import numpy as np
import pytest

from edgeship.formats import read_facts, read_header
from edgeship.formats.gguf import MAX_INLINE_ARRAY
from edgeship.samples.tensorfiles import write_gguf

VOCAB = 3000


@pytest.fixture
def model(tmp_path: Path) -> Path:
    rng = np.random.default_rng(2)
    weights = {f"w{i}": rng.standard_normal((8 * (i + 1), 64)).astype(np.float32) for i in range(4)}
    types = {"w1": gguf.GGMLQuantizationType.F16, "w2": gguf.GGMLQuantizationType.Q8_0}
    meta = {
        "general.architecture": "llama",
        "general.alignment": 64,
        "general.name": "header test",
        "llama.block_count": 2,
        "llama.context_length": 4096,
        "llama.embedding_length": 64,
        "llama.attention.head_count": 4,
        "llama.attention.layer_norm_rms_epsilon": 1e-5,
        "tokenizer.ggml.tokens": [f"tok{i}" for i in range(VOCAB)],
        "tokenizer.ggml.scores": [float(i) for i in range(VOCAB)],
        "tokenizer.chat_template": "{{ messages }}",
        "tags": ["a", "b"],
        "big": 2**40,
        "flag": True,
    }
    return write_gguf(tmp_path / "m.gguf", weights, meta, types)


def test_header_agrees_with_gguf_reader(model: Path) -> None:
    header = read_header(model)
    reader = gguf.GGUFReader(model)
    assert header.data_offset == reader.data_offset and header.alignment == 64
    assert [(t.name, t.offset, t.n_bytes, t.n_elements, t.type_name) for t in header.tensors] == [
        (t.name, int(t.data_offset), int(t.n_bytes), int(t.n_elements), t.tensor_type.name) for t in reader.tensors
    ]
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):  # the reader's own pseudo-fields (version, counts)
            continue
        if key in header.array_lengths:
            assert header.array_lengths[key] == len(field.data), key
        if key in header.fields:
            assert header.get(key) == pytest.approx(field.contents()), key


def test_long_arrays_are_skipped_unless_asked(model: Path) -> None:
    header = read_header(model)
    assert VOCAB > MAX_INLINE_ARRAY
    assert "tokenizer.ggml.tokens" not in header.fields
    assert header.array_lengths["tokenizer.ggml.tokens"] == VOCAB
    assert header.get("tags") == ["a", "b"]  # short arrays are read
    asked = read_header(model, arrays={"tokenizer.ggml.tokens"})
    assert asked.get("tokenizer.ggml.tokens")[:2] == ["tok0", "tok1"]
    assert len(asked.get("tokenizer.ggml.tokens")) == VOCAB
    assert "tokenizer.ggml.scores" not in asked.fields


def test_facts_of_a_generated_model(model: Path) -> None:
    facts = read_facts(model)
    assert (facts.arch, facts.n_layer, facts.n_head, facts.n_head_kv, facts.ctx_train) == ("llama", 2, 4, 4, 4096)
    assert (facts.n_vocab, facts.n_tensors, facts.name) == (VOCAB, 4, "header test")
    assert facts.chat_template == "{{ messages }}"
    assert facts.to_json()["has_chat_template"] is True and "chat_template" not in facts.to_json()


def test_real_model_header(real_gguf: Path) -> None:
    start = time.perf_counter()
    facts = read_facts(real_gguf)
    seconds = time.perf_counter() - start
    assert (facts.arch, facts.ctx_train, facts.n_layer, facts.n_embd) == ("gemma3", 32768, 18, 640)
    assert (facts.n_head, facts.n_head_kv, facts.head_dim_k, facts.n_ff) == (4, 1, 256, 2048)
    assert (facts.n_vocab, facts.n_tensors, facts.file_type) == (262_144, 236, "Q4_K_M")
    assert facts.chat_template is None
    header = read_header(real_gguf)
    padding = real_gguf.stat().st_size - header.data_offset - facts.weight_bytes
    assert 0 <= padding < header.alignment * len(header.tensors)
    # Generous (the benchmark measures ~0.06 s; gguf.GGUFReader took ~20 s): a slow machine passes, a reader that decodes the vocabulary does not.
    assert seconds < 5
