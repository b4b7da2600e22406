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


def retrain_tensor(src: Path, dst: Path, tensor: str, *, seed: int = 1, std: float = 0.05) -> Path:
    """Copy the adapter at ``src`` to ``dst`` with new values in one F32 tensor: an update that
    retrained one layer, for deltas (every other byte stays the same)."""
    import shutil

    header = read_header(src)
    info = next((t for t in header.tensors if t.name == tensor), None)
    if info is None or info.type_name != "F32":
        raise ValueError(f"{src.name} has no F32 tensor {tensor!r}")
    values = (np.random.default_rng(seed).standard_normal(info.n_elements) * std).astype(np.float32)
    shutil.copyfile(src, dst)
    with dst.open("r+b") as f:
        f.seek(info.offset)
        f.write(values.tobytes())
    return dst
