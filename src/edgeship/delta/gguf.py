"""GGUF layout: one header segment (metadata, vocabulary, tensor infos) and one per tensor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGUFReader

from edgeship.delta.listing import FormatError, Kind, Segment

MAGIC = b"GGUF"


def sniff(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == MAGIC


def regions(path: Path) -> list[Segment]:
    # GGUFReader memory-maps the file but only touches the header pages; tensor data is
    # read later, piece by piece, so it never becomes resident all at once.
    try:
        reader = GGUFReader(path)
    except (ValueError, KeyError, IndexError, OverflowError) as exc:
        raise FormatError(f"{path.name} is not a readable GGUF file ({exc})") from exc
    out = [Segment(0, reader.data_offset, Kind.HEADER, "header")]
    for t in reader.tensors:
        block_size, type_size = GGML_QUANT_SIZES[t.tensor_type]
        # Floats plane by element; quantized blocks plane by block (scales apart from quants).
        width = type_size if block_size > 1 else np.dtype(t.data.dtype).itemsize
        out.append(
            Segment(t.data_offset, int(t.n_bytes), Kind.TENSOR, t.name, width, t.tensor_type.name)
        )
    return out
