"""safetensors layout: the JSON header as one segment, then one segment per tensor."""

from __future__ import annotations

import struct
from pathlib import Path

from edgeship.delta.listing import Kind, Segment
from edgeship.formats.safetensors import read_header


def sniff(path: Path) -> bool:
    """An 8-byte header length that fits the file, then a JSON object."""
    with path.open("rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 8 + n <= path.stat().st_size


def regions(path: Path) -> list[Segment]:
    header = read_header(path)
    out = [Segment(0, header.data_offset, Kind.HEADER, "header")]
    out += [Segment(t.offset, t.n_bytes, Kind.TENSOR, t.name, t.width, t.dtype) for t in header.tensors]
    return out
