"""How much memory llama.cpp needs to run a GGUF model with a given context (pure arithmetic).

    total = weights + KV cache + compute buffer + work buffer and fixed overhead + runtime

- weights: the tensor bytes as stored; llama.cpp mmaps the file and every page is touched
  once the context has been filled, so all of it is resident.
- KV cache: 2 (K and V) x layers x cells x kv_heads x head_dim x bytes per element of the
  cache type; llama.cpp rounds the cells up to a multiple of 256.
- compute buffer: llama.cpp's graph allocator reuses memory, so its size is the peak of
  the tensors alive at once, which is the larger of the attention step (the K.Q scores,
  one f32 per head x cell x batch token, and the mask) and the feed-forward step.
- work buffer: the CPU backend converts the attention scores to f16 before multiplying
  them with the f16 V cache; a fixed few MiB go to threads, tokenizer and allocator.
- runtime: the process itself (Python, llama.cpp, the on-device runtime's HTTP server).

The figures assume CPU inference without flash attention, llama.cpp's defaults of a
512-token batch, and one output row per batch (serving); ``estimate_memory`` is checked
against measured RSS in tests/optimize/test_memory_rss.py (within 15%).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from edgeship.errors import OptimizeError
from edgeship.formats.facts import ModelFacts

MiB = 1 << 20
KV_CELL_PAD = 256  # llama.cpp pads the KV cache to this many cells
DEFAULT_BATCH = 512
FIXED_OVERHEAD = 4 * MiB  # threads, allocator, model/context structs (measured: 3.4-4.7 MiB)
VOCAB_BYTES_PER_TOKEN = 96  # token text, scores and lookup maps llama.cpp keeps per vocab entry
RUNTIME_BASE = 64 * MiB  # Python + llama.cpp measure ~43 MiB; the runtime's HTTP server adds the rest

# Bytes per element of a KV cache type (block types: block bytes / block elements).
KV_CACHE_BYTES: Mapping[str, float] = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q5_1": 24 / 32, "q5_0": 22 / 32, "q4_1": 20 / 32, "q4_0": 18 / 32}  # fmt: skip


@dataclass(frozen=True)
class MemoryEstimate:
    ctx: int
    kv_cells: int
    weights: int
    kv_cache: int
    compute: int
    overhead: int
    runtime: int

    @property
    def model_bytes(self) -> int:
        """What loading the model and filling the context add to a running process."""
        return self.weights + self.kv_cache + self.compute + self.overhead

    @property
    def total(self) -> int:
        return self.model_bytes + self.runtime

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "model_bytes": self.model_bytes, "total": self.total}


def estimate_memory(
    facts: ModelFacts,
    ctx: int,
    *,
    cache_type: str = "f16",
    n_batch: int = DEFAULT_BATCH,
    n_outputs: int = 1,
    runtime: int = RUNTIME_BASE,
) -> MemoryEstimate:
    """Bytes llama.cpp needs for ``facts``'s model with a ``ctx``-token context."""
    if ctx <= 0:
        raise OptimizeError(f"context size must be positive, got {ctx}")
    if cache_type not in KV_CACHE_BYTES:
        raise OptimizeError(f"unknown KV cache type {cache_type!r}", hint=f"use one of {', '.join(KV_CACHE_BYTES)}")
    cells = -(-ctx // KV_CELL_PAD) * KV_CELL_PAD
    ub = min(n_batch, ctx)  # llama.cpp never builds a batch longer than the context
    kv = int(facts.n_layer * cells * facts.n_head_kv * (facts.head_dim_k + facts.head_dim_v) * KV_CACHE_BYTES[cache_type])
    f32 = 4
    scores = cells * ub * facts.n_head  # K.Q for every head, cell and batch token
    attention = f32 * (scores + cells * ub + 6 * facts.n_embd * ub)  # + mask + Q/K/V/residual rows
    feed_forward = f32 * (3 * facts.n_ff * ub + 4 * facts.n_embd * ub + cells * ub)  # gate, up, act (+ mask alive)
    output = f32 * (facts.n_vocab * n_outputs + 2 * facts.n_embd * ub)
    compute = max(attention, feed_forward, output)
    work = 2 * max(scores, facts.n_ff * ub)  # f16 copies of the scores or the widest activation
    overhead = work + FIXED_OVERHEAD + VOCAB_BYTES_PER_TOKEN * facts.n_vocab
    return MemoryEstimate(
        ctx=ctx,
        kv_cells=cells,
        weights=facts.weight_bytes,
        kv_cache=kv,
        compute=compute,
        overhead=overhead,
        runtime=runtime,
    )
