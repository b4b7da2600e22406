"""LoRA adapters in llama.cpp's GGUF adapter format, generated for a given base model.

Random low-rank deltas on the attention projections: not a fine-tune, but llama.cpp
loads them like one and they change the base's answers, which is what tests and the
benchmark need (no training, no downloads).
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np

from edgeship.formats.gguf import read_header

# Projections every transformer llama.cpp runs has (the names are llama.cpp's).
DEFAULT_TARGETS = ("attn_q", "attn_v")


def write_lora(path: Path, base: Path, *, rank: int = 4, alpha: float = 8.0, seed: int = 0,
               std: float = 0.05, targets: Collection[str] = DEFAULT_TARGETS) -> Path:
    """Write an adapter for the GGUF at ``base`` to ``path`` (F32 tensors, shapes read from ``base``)."""
    import gguf

    header = read_header(base)
    arch = header.architecture or "llama"
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    for t in header.tensors:
        parts = t.name.split(".")
        if len(t.shape) != 2 or len(parts) < 3 or parts[-2] not in targets:
            continue
        n_in, n_out = t.shape  # GGUF order: inputs vary fastest
        # numpy shapes are row-major, so GGUF's [n_in, rank] is numpy's (rank, n_in).
        writer.add_tensor(f"{t.name}.lora_a", (rng.standard_normal((rank, n_in)) * std).astype(np.float32))
        writer.add_tensor(f"{t.name}.lora_b", (rng.standard_normal((n_out, rank)) * std).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
