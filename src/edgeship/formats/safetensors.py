"""The one safetensors header reader: ``u64 n``, an n-byte JSON header, then the tensors.

    header = read_header(path)
    header.tensors[0].name, .dtype, .shape, .offset, .n_bytes   # absolute file offsets
    header.data_offset                                          # 8 + n

Every tensor entry is checked (dtype, shape, offsets inside the data area, size matching
shape x dtype, no overlaps), so a damaged file fails with a ``ValidationError`` that says
which entry is wrong, never with a JSON or numpy error.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeship.errors import ValidationError
from edgeship.formats.files import open_model

MAX_HEADER = 100 * 1024 * 1024  # bytes; the safetensors spec's own limit
METADATA = "__metadata__"

# bytes per element; dtypes not listed (sub-byte floats, newer types) are read without the size check
DTYPE_WIDTH = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4,
    "U64": 8, "I64": 8, "F64": 8,
}  # fmt: skip


@dataclass(frozen=True)
class SafetensorsTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int  # absolute file offset
    n_bytes: int

    @property
    def width(self) -> int:
        """Bytes per element (1 for a dtype this reader does not size)."""
        return DTYPE_WIDTH.get(self.dtype, 1)


@dataclass(frozen=True)
class SafetensorsHeader:
    data_offset: int  # 8 + the JSON header's length
    tensors: tuple[SafetensorsTensor, ...]  # in file order
    metadata: dict[str, Any]


def _bad(path: Path, why: str) -> ValidationError:
    return ValidationError(f"{path} is not a valid safetensors file: {why}", hint="re-download or re-export the model")


def read_header(path: Path) -> SafetensorsHeader:
    path = Path(path)
    with open_model(path, "safetensors") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise _bad(path, f"it is {len(prefix)} bytes long, too short for the 8-byte header length")
        (n,) = struct.unpack("<Q", prefix)
        size = f.seek(0, 2)
        if 8 + n > size:
            raise _bad(path, f"its header length field says {n} bytes, but only {size - 8} follow (truncated or corrupt)")
        if n > MAX_HEADER:
            raise _bad(path, f"its header length field says {n} bytes, over the format's {MAX_HEADER}-byte limit")
        f.seek(8)
        raw = f.read(n)
    return _parse(path, raw, size)


def _parse(path: Path, raw: bytes, size: int) -> SafetensorsHeader:
    base = 8 + len(raw)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _bad(path, f"its header is not UTF-8 text (byte {8 + exc.start})") from None
    except json.JSONDecodeError as exc:
        at = 8 + len(exc.doc[: exc.pos].encode())  # exc.pos counts characters, not bytes
        raise _bad(path, f"its header is not valid JSON (byte {at})") from None
    except RecursionError:
        raise _bad(path, "its header nests JSON too deeply to be a tensor table") from None
    if not isinstance(doc, dict):
        raise _bad(path, "its header is JSON but not an object of tensors")
    metadata = doc.pop(METADATA, {})
    if not isinstance(metadata, dict):
        raise _bad(path, f"its {METADATA} is not an object")
    tensors = sorted((_tensor(path, name, info, base, size) for name, info in doc.items()), key=lambda t: (t.offset, t.n_bytes))
    for before, after in zip(tensors, tensors[1:], strict=False):
        if after.offset < before.offset + before.n_bytes:
            raise _bad(path, f"tensors {before.name!r} and {after.name!r} overlap")
    return SafetensorsHeader(base, tuple(tensors), metadata)


def _tensor(path: Path, name: str, info: object, base: int, size: int) -> SafetensorsTensor:
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
        raise _bad(path, f"tensor {name!r} lacks its dtype, shape or data_offsets")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str):
        raise _bad(path, f"tensor {name!r} has dtype {dtype!r}, not a type name")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise _bad(path, f"tensor {name!r} has shape {shape!r}, not a list of sizes")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
        raise _bad(path, f"tensor {name!r} has data_offsets {offsets!r}, not [begin, end]")
    begin, end = offsets
    data_size = size - base
    if not 0 <= begin <= end <= data_size:
        raise _bad(path, f"tensor {name!r} data {begin}..{end} lies outside the {data_size}-byte data area (truncated?)")
    need = math.prod(shape) * DTYPE_WIDTH.get(dtype, 0)
    if dtype in DTYPE_WIDTH and end - begin != need:
        raise _bad(path, f"tensor {name!r} holds {end - begin} bytes, but {dtype} of shape {shape} needs {need}")
    return SafetensorsTensor(name, dtype, tuple(shape), base + begin, end - begin)
