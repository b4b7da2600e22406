"""safetensors layout: `u64 n`, an n-byte JSON header, then raw tensors at header offsets."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from edgeship.delta.listing import Kind, Segment
from edgeship.errors import ValidationError

MAX_HEADER = 100 * 1024 * 1024  # bytes; the safetensors spec's own limit

DTYPE_WIDTH = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4,
    "U64": 8, "I64": 8, "F64": 8,
}  # fmt: skip


def sniff(path: Path) -> bool:
    """An 8-byte header length that fits the file, then a JSON object."""
    with path.open("rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 8 + n <= path.stat().st_size


def regions(path: Path) -> list[Segment]:
    with path.open("rb") as f:
        prefix = f.read(8)
        if len(prefix) != 8:
            raise ValidationError(f"{path.name} is too short for safetensors")
        (n,) = struct.unpack("<Q", prefix)
        if n > MAX_HEADER:
            raise ValidationError(f"{path.name}: safetensors header of {n} bytes is over the limit")
        raw = f.read(n)
    try:
        header = json.loads(raw)
        base = 8 + n
        out = [Segment(0, base, Kind.HEADER, "header")]
        for name, info in header.items():
            if name == "__metadata__":
                continue
            begin, end = (int(x) for x in info["data_offsets"])
            width = DTYPE_WIDTH.get(info["dtype"], 1)
            out.append(Segment(base + begin, end - begin, Kind.TENSOR, name, width, info["dtype"]))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValidationError(f"{path.name} has no readable safetensors header ({exc})") from exc
    return out
