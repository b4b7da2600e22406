"""GGUF layout: the header split into its entries, then one segment per tensor.

Each metadata entry is its own segment, so a metadata-only change sends that entry (coded
against its old version) and copies the rest: the vocabulary arrays, megabytes in a large
model, are never re-coded, and coding stays small in memory however big the header is.
"""

from __future__ import annotations

from pathlib import Path

from edgeship.delta.listing import Kind, Segment
from edgeship.formats.gguf import MAGIC, read_header

FIXED = 24  # magic, version, tensor count, metadata count


def sniff(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == MAGIC


def regions(path: Path) -> list[Segment]:
    header = read_header(path)
    out = [Segment(0, FIXED, Kind.HEADER, "gguf counts")]
    out += [Segment(start, end - start, Kind.HEADER, f"kv:{key}") for key, (start, end) in header.kv_spans.items()]
    infos_at = header.infos_span[0]
    # The alignment padding travels with the table: its length changes whenever the table's does.
    out.append(Segment(infos_at, header.data_offset - infos_at, Kind.HEADER, "tensor infos"))
    # Floats plane by element; quantized blocks plane by block (scales apart from quants).
    out += [Segment(t.offset, t.n_bytes, Kind.TENSOR, t.name, t.type_size, t.type_name) for t in header.tensors]
    return out
