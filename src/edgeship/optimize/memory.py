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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeship.errors import OptimizeError, ValidationError
from edgeship.release.inspect import inspect_component
from edgeship.release.manifest import ComponentKind

MiB = 1 << 20
KV_CELL_PAD = 256  # llama.cpp pads the KV cache to this many cells
DEFAULT_BATCH = 512
FIXED_OVERHEAD = 4 * MiB  # threads, allocator, model/context structs (measured: 3.4-4.7 MiB)
VOCAB_BYTES_PER_TOKEN = 96  # token text, scores and lookup maps llama.cpp keeps per vocab entry
RUNTIME_BASE = 64 * MiB  # Python + llama.cpp measure ~43 MiB; the runtime's HTTP server adds the rest

# Bytes per element of a KV cache type (block types: block bytes / block elements).
KV_CACHE_BYTES: Mapping[str, float] = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q5_1": 24 / 32, "q5_0": 22 / 32, "q4_1": 20 / 32, "q4_0": 18 / 32}  # fmt: skip


@dataclass(frozen=True)
class ModelFacts:
    """What the estimator needs from a GGUF file (see ``read_facts``)."""

    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim_k: int
    head_dim_v: int
    n_ff: int
    n_vocab: int
    ctx_train: int
    n_params: int
    weight_bytes: int
    file_type: str  # "F32", "F16", "Q4_K_M", ...
    tensor_types: dict[str, int] = field(default_factory=dict)  # ggml type name -> tensor count

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.weight_bytes / self.n_params if self.n_params else 0.0

    @property
    def is_quantized(self) -> bool:
        """True when any tensor is stored in a block-quantized type (not a float type)."""
        return any(t not in FLOAT_TYPES for t in self.tensor_types)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "bits_per_weight": round(self.bits_per_weight, 3)}


FLOAT_TYPES = frozenset({"F32", "F16", "BF16", "F64", "I8", "I16", "I32", "I64"})


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


def read_facts(path: Path) -> ModelFacts:
    """Read the shape and tensor sizes of a GGUF model (header only; tensors are not loaded)."""
    import gguf

    # The release inspector checks the magic and that no tensor runs past the end of the file.
    meta = inspect_component(ComponentKind.GGUF, path)
    reader = gguf.GGUFReader(str(path))

    def value(key: str, default: Any = None) -> Any:
        f = reader.fields.get(key)
        return f.contents() if f is not None else default

    arch = value("general.architecture")
    if not arch:
        raise ValidationError(f"{path} has no general.architecture", hint="is it a llama.cpp model GGUF?")
    n_embd = value(f"{arch}.embedding_length")
    n_layer = value(f"{arch}.block_count")
    n_head = value(f"{arch}.attention.head_count")
    if not (n_embd and n_layer and n_head):
        raise ValidationError(f"{path} lacks {arch}.embedding_length/block_count/attention.head_count", hint="not a transformer LLM GGUF")
    n_head_kv = value(f"{arch}.attention.head_count_kv", n_head)
    head_dim = n_embd // n_head
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    types: dict[str, int] = meta["tensor_types"]
    file_type = value("general.file_type")
    return ModelFacts(
        arch=str(arch),
        n_layer=int(n_layer),
        n_embd=int(n_embd),
        n_head=int(n_head),
        n_head_kv=int(n_head_kv),
        head_dim_k=int(value(f"{arch}.attention.key_length", head_dim)),
        head_dim_v=int(value(f"{arch}.attention.value_length", head_dim)),
        n_ff=int(value(f"{arch}.feed_forward_length", 4 * n_embd)),
        n_vocab=len(tokens.data) if tokens is not None else 0,
        ctx_train=int(value(f"{arch}.context_length", 0)),
        n_params=int(meta["parameters"]),
        weight_bytes=sum(int(t.n_bytes) for t in reader.tensors),
        file_type=_file_type_name(file_type, types),
        tensor_types=types,
    )


def _file_type_name(code: int | None, types: Mapping[str, int]) -> str:
    import gguf

    if code is not None:
        try:
            return gguf.LlamaFileType(int(code)).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass  # a file type this gguf package does not know: fall back to the tensors
    return max(types, key=lambda k: types[k]) if types else "unknown"
