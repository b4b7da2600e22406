"""GGUF layout: one header segment (metadata, vocabulary, tensor infos) and one per tensor."""

from __future__ import annotations

from pathlib import Path

from edgeship.delta.listing import Kind, Segment
from edgeship.formats.gguf import MAGIC, read_header


def sniff(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == MAGIC


def regions(path: Path) -> list[Segment]:
    header = read_header(path)
    out = [Segment(0, header.data_offset, Kind.HEADER, "header")]
    # Floats plane by element; quantized blocks plane by block (scales apart from quants).
    out += [Segment(t.offset, t.n_bytes, Kind.TENSOR, t.name, t.type_size, t.type_name) for t in header.tensors]
    return out
