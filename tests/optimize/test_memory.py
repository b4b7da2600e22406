"""The estimator's arithmetic, on made-up model facts (no files)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from edgeship.errors import OptimizeError, ValidationError
from edgeship.formats import ModelFacts, read_facts
from edgeship.optimize.memory import FIXED_OVERHEAD, estimate_memory

MiB = 1 << 20

# Shaped like Llama-2-7B (32 layers, 4096 wide, 32 heads, 11008 FFN, 32000 tokens).
LLAMA7B = ModelFacts(
    arch="llama", n_layer=32, n_embd=4096, n_head=32, n_head_kv=32, head_dim_k=128, head_dim_v=128,
    n_ff=11008, n_vocab=32000, ctx_train=4096, n_params=6_738_415_616, weight_bytes=3_825_065_984,
    file_type="Q4_K_M", tensor_types={"Q4_K": 193, "Q6_K": 33, "F32": 65},
)  # fmt: skip


def test_kv_cache_is_two_by_layers_by_ctx_by_kv_width() -> None:
    e = estimate_memory(LLAMA7B, 4096)
    assert e.kv_cache == 2 * 32 * 4096 * 32 * 128 * 2  # f16: the 2 GiB every llama.cpp user knows
    assert e.kv_cache == 2048 * MiB
    assert estimate_memory(LLAMA7B, 4096, cache_type="q8_0").kv_cache == 2 * 32 * 4096 * 32 * 128 * 34 // 32
    gqa = replace(LLAMA7B, n_head_kv=8)
    assert estimate_memory(gqa, 4096).kv_cache == e.kv_cache // 4


def test_kv_cells_round_up_to_256() -> None:
    assert estimate_memory(LLAMA7B, 300).kv_cells == 512
    assert estimate_memory(LLAMA7B, 512).kv_cells == 512
    assert estimate_memory(LLAMA7B, 513).kv_cache == estimate_memory(LLAMA7B, 768).kv_cache


def test_weights_are_the_stored_tensor_bytes_and_totals_add_up() -> None:
    e = estimate_memory(LLAMA7B, 2048, runtime=10 * MiB)
    assert e.weights == LLAMA7B.weight_bytes
    assert e.model_bytes == e.weights + e.kv_cache + e.compute + e.overhead
    assert e.total == e.model_bytes + 10 * MiB
    assert e.overhead > FIXED_OVERHEAD


def test_compute_buffer_grows_with_context_through_the_attention_scores() -> None:
    small, big = estimate_memory(LLAMA7B, 1024), estimate_memory(LLAMA7B, 2048)
    # one more 1024 cells: a 512-token batch of f32 scores for 32 heads, plus the mask
    assert big.compute - small.compute == 4 * 1024 * 512 * (32 + 1)
    # a context shorter than a batch makes the batch shorter too
    tiny = estimate_memory(LLAMA7B, 256)
    assert tiny.compute < small.compute / 2


def test_asking_for_all_logits_can_dominate_the_compute_buffer() -> None:
    wide_vocab = replace(LLAMA7B, n_vocab=256_000)
    serving = estimate_memory(wide_vocab, 512)
    scoring = estimate_memory(wide_vocab, 512, n_outputs=512)
    assert scoring.compute == 4 * (256_000 * 512 + 2 * 4096 * 512)
    assert scoring.compute > serving.compute


def test_bad_arguments() -> None:
    with pytest.raises(OptimizeError, match="positive"):
        estimate_memory(LLAMA7B, 0)
    with pytest.raises(OptimizeError, match="unknown KV cache type"):
        estimate_memory(LLAMA7B, 512, cache_type="q3")


def test_read_facts_of_a_generated_model(source_model: Path, variants: dict[str, Path]) -> None:
    facts = read_facts(source_model)
    assert (facts.arch, facts.n_layer, facts.n_embd, facts.n_head, facts.n_head_kv) == ("llama", 2, 256, 4, 2)
    assert (facts.head_dim_k, facts.n_ff, facts.n_vocab, facts.ctx_train) == (64, 512, 259, 512)
    assert facts.file_type == "F32" and not facts.is_quantized
    assert facts.bits_per_weight == pytest.approx(32.0)
    q4 = read_facts(variants["Q4_K_M"])
    assert q4.file_type == "Q4_K_M" and q4.is_quantized
    assert q4.n_params == facts.n_params
    assert 4.0 < q4.bits_per_weight < 6.5


def test_read_facts_refuses_what_is_not_a_gguf_model(tmp_path: Path) -> None:
    junk = tmp_path / "model.gguf"
    junk.write_bytes(b"PK\x03\x04 definitely a zip file" * 10)
    with pytest.raises(ValidationError, match="is not a valid GGUF file"):
        read_facts(junk)
    with pytest.raises(ValidationError, match="does not exist"):
        read_facts(tmp_path / "missing.gguf")
