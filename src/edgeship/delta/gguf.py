"""GGUF layout: one header segment (metadata, vocabulary, tensor infos) and one per tensor.

The header is walked with a small buffered reader rather than `gguf.GGUFReader`: the reader
builds numpy views for every vocabulary entry, which for a 256k-token vocabulary costs
seconds and hundreds of MB. Tests check this walker against GGUFReader.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from edgeship.delta.listing import FormatError, Kind, Segment

MAGIC = b"GGUF"
_BUFFER = 1024 * 1024  # bytes read at a time while walking the header
_DEFAULT_ALIGNMENT = 32
_STRING, _ARRAY = 8, 9
# GGUFValueType → size in bytes, for the fixed-size scalar types.
_SCALAR_SIZE = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")


class _Cursor:
    """Sequential little-endian reads over a file, a buffer at a time."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.buf = b""
        self.pos = 0  # within buf
        self.base = 0  # file offset of buf[0]

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            self.base += self.pos
            self.buf = self.buf[self.pos :] + self.f.read(max(n, _BUFFER))
            self.pos = 0
            if n > len(self.buf):
                raise FormatError("GGUF header is truncated")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def u32(self) -> int:
        return int(_U32.unpack(self.take(4))[0])

    def u64(self) -> int:
        return int(_U64.unpack(self.take(8))[0])

    def string(self) -> bytes:
        return self.take(self.u64())

    def skip_value(self, vtype: int) -> None:
        if vtype in _SCALAR_SIZE:
            self.take(_SCALAR_SIZE[vtype])
        elif vtype == _STRING:
            self.string()
        elif vtype == _ARRAY:
            item, count = self.u32(), self.u64()
            if item in _SCALAR_SIZE:
                self.take(_SCALAR_SIZE[item] * count)
            else:
                for _ in range(count):
                    self.skip_value(item)
        else:
            raise FormatError(f"unknown GGUF value type {vtype}")


def sniff(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == MAGIC


def regions(path: Path) -> list[Segment]:
    with path.open("rb") as f:
        cur = _Cursor(f)
        if cur.take(4) != MAGIC or cur.u32() not in (2, 3):
            raise FormatError(f"{path.name} is not a little-endian GGUF v2/v3 file")
        n_tensors, n_kv = cur.u64(), cur.u64()
        alignment = _DEFAULT_ALIGNMENT
        for _ in range(n_kv):
            key, vtype = cur.string(), cur.u32()
            if key == b"general.alignment" and vtype == 4:
                alignment = cur.u32()
            else:
                cur.skip_value(vtype)
        infos: list[tuple[str, int, GGMLQuantizationType, int]] = []
        for _ in range(n_tensors):
            name = cur.string().decode("utf-8", "replace")
            n_elements = 1
            for _ in range(cur.u32()):
                n_elements *= cur.u64()
            try:
                ggml_type = GGMLQuantizationType(cur.u32())
            except ValueError as exc:
                raise FormatError(f"tensor {name}: {exc}") from exc
            infos.append((name, n_elements, ggml_type, cur.u64()))
        if alignment <= 0 or alignment & (alignment - 1):
            raise FormatError(f"GGUF alignment {alignment} is not a power of two")
        data_offset = -(-cur.offset // alignment) * alignment
    out = [Segment(0, data_offset, Kind.HEADER, "header")]
    for name, n_elements, ggml_type, offset in infos:
        block_size, type_size = GGML_QUANT_SIZES[ggml_type]
        # Floats plane by element; quantized blocks plane by block (scales apart from quants).
        n_bytes = n_elements * type_size // block_size
        out.append(
            Segment(data_offset + offset, n_bytes, Kind.TENSOR, name, type_size, ggml_type.name)
        )
    return out
