"""A tiny llama-architecture GGUF with random weights and a byte-level vocabulary.

llama.cpp loads and runs it, so the runtime, the optimizer and the demo have a real LLM
without downloading one. It talks nonsense, deterministically for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class TinyLlama:
    """Shape of the generated model; defaults give ~0.1M parameters."""

    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 128
    n_ctx: int = 256
    seed: int = 0
    name: str = "edgeship-tiny-llama"
    # Tests use these to make a GGUF of another architecture name (same tensors) or one that
    # carries its own chat template.
    architecture: str = "llama"
    chat_template: str | None = None

    @property
    def n_vocab(self) -> int:
        return 3 + 256  # <unk> <s> </s> + one token per byte


def _vocab() -> tuple[list[bytes], list[float], list[int]]:
    import gguf

    tokens = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{b:02X}>".encode() for b in range(256)]
    scores = [0.0] * len(tokens)
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
    return tokens, scores, [int(t) for t in types]


def tensors(spec: TinyLlama) -> dict[str, np.ndarray]:
    """The model's weights by GGUF tensor name (numpy shapes are row-major: [out, in])."""
    rng = np.random.default_rng(spec.seed)
    head_dim = spec.n_embd // spec.n_head
    kv_dim = head_dim * spec.n_head_kv

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    out = {"token_embd.weight": w(spec.n_vocab, spec.n_embd)}
    for i in range(spec.n_layer):
        p = f"blk.{i}."
        out[p + "attn_norm.weight"] = np.ones(spec.n_embd, np.float32)
        out[p + "attn_q.weight"] = w(spec.n_embd, spec.n_embd)
        out[p + "attn_k.weight"] = w(kv_dim, spec.n_embd)
        out[p + "attn_v.weight"] = w(kv_dim, spec.n_embd)
        out[p + "attn_output.weight"] = w(spec.n_embd, spec.n_embd)
        out[p + "ffn_norm.weight"] = np.ones(spec.n_embd, np.float32)
        out[p + "ffn_gate.weight"] = w(spec.n_ff, spec.n_embd)
        out[p + "ffn_up.weight"] = w(spec.n_ff, spec.n_embd)
        out[p + "ffn_down.weight"] = w(spec.n_embd, spec.n_ff)
    out["output_norm.weight"] = np.ones(spec.n_embd, np.float32)
    out["output.weight"] = w(spec.n_vocab, spec.n_embd)
    return out


def write_tiny_llama(path: Path, spec: TinyLlama = TinyLlama(), *, weights: dict[str, np.ndarray] | None = None) -> Path:
    """Write the model to ``path`` (F32); ``weights`` may replace some tensors (e.g. a fine-tune)."""
    import gguf

    writer = gguf.GGUFWriter(str(path), spec.architecture)
    writer.add_name(spec.name)
    writer.add_context_length(spec.n_ctx)
    writer.add_embedding_length(spec.n_embd)
    writer.add_block_count(spec.n_layer)
    writer.add_feed_forward_length(spec.n_ff)
    writer.add_head_count(spec.n_head)
    writer.add_head_count_kv(spec.n_head_kv)
    writer.add_rope_dimension_count(spec.n_embd // spec.n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    tokens, scores, types = _vocab()
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    if spec.chat_template is not None:
        writer.add_chat_template(spec.chat_template)
    all_tensors = tensors(spec)
    all_tensors.update(weights or {})
    for name, array in all_tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
