"""The one GGUF header reader: metadata fields and tensor infos, never the tensor data.

Every part of edgeship that needs a GGUF header (release inspect, delta, optimize, runtime)
asks ``read_header``::

    header = read_header(path)
    header.get("general.architecture")          # "gemma3"
    header.arch_get("context_length")           # "<arch>.context_length" -> 32768
    header.array_lengths["tokenizer.ggml.tokens"]  # 262144, though the tokens were not read
    header.tensors[0].offset, .n_bytes           # absolute file offsets of tensor data
    header.data_offset                           # where tensor data begins

Long arrays (the vocabulary: hundreds of thousands of strings, megabytes) are skipped, not
decoded: only their lengths are kept, unless the caller names them in ``arrays``. That is
why this is not ``gguf.GGUFReader``, which builds a numpy view per vocabulary entry (seconds
and hundreds of MB for a 256k vocabulary).

Every count and length in the file is checked against the bytes that remain before it is
used, so a damaged or hostile file fails with a ``ValidationError`` saying which field at
which offset is wrong, never with a library's error.
"""

from __future__ import annotations

import functools
import os
import struct
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from edgeship.errors import ValidationError
from edgeship.formats.files import open_model

MAGIC = b"GGUF"
VERSIONS = (2, 3)  # v1 (2023) used 32-bit counts; llama.cpp no longer reads it
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_INLINE_ARRAY = 1024  # arrays up to this many items are decoded; longer ones only if asked
MAX_NESTING = 8  # arrays of arrays: deeper than this is not a model, it is an attack
_BUFFER = 1024 * 1024  # bytes read at a time

_STRING, _ARRAY = 8, 9
# GGUFValueType -> struct format of the fixed-size scalar types
_SCALARS: dict[int, struct.Struct] = {
    t: struct.Struct(fmt)
    for t, fmt in {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}.items()
}
_U32, _U64 = _SCALARS[4], _SCALARS[10]
_MIN_HEADER = 4 + 4 + 8 + 8  # magic, version, tensor count, metadata count
_MIN_KV = 8 + 4 + 1  # key length, value type, smallest value
_MIN_TENSOR = 8 + 4 + 4 + 8  # name length, n_dims, type, offset


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # GGUF order: the fastest-varying dimension first
    ggml_type: int
    type_name: str  # "F32", "Q4_K", ...
    offset: int  # absolute file offset of the tensor's bytes
    n_elements: int
    n_bytes: int
    type_size: int  # bytes per block (per element for float types)


@dataclass(frozen=True)
class GGUFHeader:
    """A GGUF file's header. ``fields`` holds scalars, strings and the arrays that were read."""

    version: int
    file_size: int
    fields: Mapping[str, Any]
    array_lengths: Mapping[str, int]  # every array's item count, read or skipped
    tensors: tuple[TensorInfo, ...]
    alignment: int
    data_offset: int  # first byte of tensor data (the header's length, padding included)
    # Byte ranges [start, end) of each metadata entry (key, type, value) and of the tensor
    # infos: what a metadata edit (formats.gguf_edit) copies around.
    kv_spans: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    infos_span: tuple[int, int] = (0, 0)

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    @property
    def architecture(self) -> str | None:
        arch = self.fields.get("general.architecture")
        return arch if isinstance(arch, str) and arch else None

    def arch_get(self, name: str, default: Any = None) -> Any:
        """The architecture's own key, e.g. ``arch_get("block_count")`` -> ``gemma3.block_count``."""
        return self.fields.get(f"{self.architecture}.{name}", default)


def read_header(path: Path, *, arrays: Collection[str] = ()) -> GGUFHeader:
    """Parse ``path``'s GGUF header; arrays longer than MAX_INLINE_ARRAY are read only if named in ``arrays``."""
    path = Path(path)
    with open_model(path, "GGUF") as f:
        return _Parser(f, path, frozenset(arrays)).header()


def _bad(path: Path, why: str) -> ValidationError:
    return ValidationError(f"{path} is not a valid GGUF file: {why}", hint="re-download or re-export the model")


class _Parser:
    """Sequential little-endian reads over the file, a buffer at a time."""

    def __init__(self, f: BinaryIO, path: Path, arrays: frozenset[str]) -> None:
        self.f = f
        self.path = path
        self.arrays = arrays
        self.size = _file_size(f)
        self.buf = b""
        self.pos = 0  # within buf
        self.base = 0  # file offset of buf[0]

    # -- bytes ---------------------------------------------------------------------------

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def remaining(self) -> int:
        return self.size - self.offset

    def bad(self, why: str) -> ValidationError:
        return _bad(self.path, why)

    def need(self, n: int, what: str, at: int | None = None) -> None:
        """Refuse a length that runs past the end of the file before anything is read or allocated."""
        if n > self.remaining():
            at = self.offset if at is None else at
            if n > self.size:
                raise self.bad(f"{what} at byte {at} claims {n} bytes, more than the whole {self.size}-byte file (a corrupt length, or a truncated file)")
            raise self.bad(f"{what} at byte {at} needs {n} bytes, but the file ends {self.remaining()} bytes later (truncated?)")

    def ensure(self, n: int, what: str) -> None:
        """Have at least ``n`` unread bytes in the buffer (reading a buffer's worth more)."""
        if self.pos + n <= len(self.buf):
            return
        self.need(n, what)
        self.base += self.pos
        self.buf = self.buf[self.pos :] + self.f.read(max(n, _BUFFER))
        self.pos = 0
        if n > len(self.buf):
            raise self.bad(f"the file shrank while {what} at byte {self.offset} was read")

    def take(self, n: int, what: str) -> bytes:
        self.ensure(n, what)
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def skip(self, n: int, what: str) -> None:
        self.need(n, what)
        if self.pos + n <= len(self.buf):
            self.pos += n
            return
        self.base = self.offset + n
        self.f.seek(self.base)
        self.buf, self.pos = b"", 0

    def u32(self, what: str) -> int:
        return int(_U32.unpack(self.take(4, what))[0])

    def u64(self, what: str) -> int:
        return int(_U64.unpack(self.take(8, what))[0])

    def string(self, what: str) -> str:
        at = self.offset
        n = self.u64(f"the length of {what}")
        self.need(n, what, at)
        return self.take(n, what).decode("utf-8", "replace")

    # -- values --------------------------------------------------------------------------

    def value(self, vtype: int, key: str, depth: int = 0) -> Any:
        if vtype in _SCALARS:
            return _SCALARS[vtype].unpack(self.take(_SCALARS[vtype].size, f"the value of {key!r}"))[0]
        if vtype == _STRING:
            return self.string(f"the value of {key!r}")
        if vtype == _ARRAY:
            return self.array(key, depth)
        raise self.bad(f"metadata {key!r} at byte {self.offset - 4} has unknown value type {vtype}")

    def array(self, key: str, depth: int) -> list[Any] | int:
        """The items of an array, or only its length when it is long and not asked for."""
        if depth >= MAX_NESTING:
            raise self.bad(f"metadata {key!r} nests arrays more than {MAX_NESTING} deep")
        at = self.offset
        item, count = self.u32(f"the item type of {key!r}"), self.u64(f"the length of {key!r}")
        smallest = _SCALARS[item].size if item in _SCALARS else 8 if item == _STRING else 12
        if item not in _SCALARS and item not in (_STRING, _ARRAY):
            raise self.bad(f"array {key!r} at byte {at} has unknown item type {item}")
        self.need(count * smallest, f"array {key!r} of {count} items", at)
        if count <= MAX_INLINE_ARRAY or key in self.arrays:
            if item in _SCALARS:
                fmt = _SCALARS[item].format[1:]
                return list(struct.unpack(f"<{count}{fmt}", self.take(count * smallest, f"array {key!r}")))
            return [self.value(item, key, depth + 1) for _ in range(count)]
        if item in _SCALARS:
            self.skip(count * smallest, f"array {key!r}")
        elif item == _STRING:
            self.skip_strings(count, key)
        else:
            for _ in range(count):
                self.value(item, key, depth + 1)
        return count

    def skip_strings(self, count: int, key: str) -> None:
        # The hot loop for a vocabulary (262,144 strings in Gemma 3): lengths are unpacked
        # straight from the buffer with local variables, and no string is copied or decoded;
        # only a string that crosses the buffer's end takes the checked slow path.
        unpack_from, buf, pos, end = _U64.unpack_from, self.buf, self.pos, len(self.buf)
        for _ in range(count):
            if pos + 8 <= end:
                n = unpack_from(buf, pos)[0]
                if pos + 8 + n <= end:
                    pos += 8 + n
                    continue
            self.pos = pos
            self.ensure(8, f"a string length in array {key!r}")
            n = _U64.unpack_from(self.buf, self.pos)[0]
            self.pos += 8
            self.skip(n, f"a string of {n} bytes in array {key!r}")
            buf, pos, end = self.buf, self.pos, len(self.buf)
        self.pos = pos

    # -- the header ----------------------------------------------------------------------

    def header(self) -> GGUFHeader:
        if self.size < _MIN_HEADER:
            raise self.bad(f"it is {self.size} bytes long, shorter than the {_MIN_HEADER}-byte fixed header")
        magic = self.take(4, "the magic")
        if magic != MAGIC:
            raise self.bad(f"it starts with {magic!r}, not b'GGUF'")
        version = self.u32("the version")
        if version not in VERSIONS:
            if int.from_bytes(version.to_bytes(4, "little"), "big") in VERSIONS:
                raise self.bad("it is a big-endian GGUF, which edgeship and llama.cpp on little-endian devices cannot run")
            raise self.bad(f"GGUF version {version} is not supported (only versions {' and '.join(map(str, VERSIONS))})")
        n_tensors, n_kv = self.u64("the tensor count"), self.u64("the metadata count")
        self.need(n_kv * _MIN_KV + n_tensors * _MIN_TENSOR, f"a header of {n_kv} metadata entries and {n_tensors} tensors", 8)
        fields: dict[str, Any] = {}
        lengths: dict[str, int] = {}
        spans: dict[str, tuple[int, int]] = {}
        for _ in range(n_kv):
            at = self.offset
            key = self.string("a metadata key")
            if key in fields or key in lengths:
                raise self.bad(f"metadata key {key!r} appears twice (the second at byte {at})")
            vtype = self.u32(f"the value type of {key!r}")
            value = self.value(vtype, key)
            spans[key] = (at, self.offset)
            if vtype == _ARRAY:
                lengths[key] = value if isinstance(value, int) else len(value)
                if isinstance(value, int):
                    continue
            fields[key] = value
        alignment = fields.get("general.alignment", DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or isinstance(alignment, bool) or alignment <= 0 or alignment & (alignment - 1):
            raise self.bad(f"general.alignment {alignment!r} is not a power of two")
        infos_start = self.offset
        infos = [self.tensor_info() for _ in range(n_tensors)]
        infos_span = (infos_start, self.offset)
        data_offset = -(-self.offset // alignment) * alignment
        tensors = tuple(self.place(info, data_offset, alignment) for info in infos)
        twice = next((name for name, n in Counter(t.name for t in tensors).items() if n > 1), None)
        if twice is not None:
            raise self.bad(f"tensor name {twice!r} appears twice")
        return GGUFHeader(version, self.size, fields, lengths, tensors, alignment, data_offset, spans, infos_span)

    def tensor_info(self) -> tuple[str, tuple[int, ...], int, int]:
        at = self.offset
        name = self.string("a tensor name")
        n_dims = self.u32(f"the dimension count of tensor {name!r}")
        if n_dims > MAX_DIMS:
            raise self.bad(f"tensor {name!r} at byte {at} has {n_dims} dimensions; GGUF allows at most {MAX_DIMS}")
        shape = tuple(self.u64(f"a dimension of tensor {name!r}") for _ in range(n_dims))
        return name, shape, self.u32(f"the type of tensor {name!r}"), self.u64(f"the offset of tensor {name!r}")

    def place(self, info: tuple[str, tuple[int, ...], int, int], data_offset: int, alignment: int) -> TensorInfo:
        name, shape, ggml_type, rel = info
        sizes = _quant_sizes()
        if ggml_type not in sizes:
            raise self.bad(f"tensor {name!r} has unknown type {ggml_type}")
        type_name, block_size, type_size = sizes[ggml_type]
        n_elements = 1
        for d in shape:
            n_elements *= d
        if shape and shape[0] % block_size:
            raise self.bad(f"tensor {name!r} has rows of {shape[0]} elements, not a multiple of {type_name}'s {block_size}-element blocks")
        if rel % alignment:
            raise self.bad(f"tensor {name!r} has data offset {rel}, not a multiple of the {alignment}-byte alignment")
        n_bytes = n_elements // block_size * type_size
        start = data_offset + rel
        if start + n_bytes > self.size:
            raise self.bad(f"tensor {name!r} ({n_bytes} bytes at byte {start}) ends past the end of the {self.size}-byte file (truncated?)")
        return TensorInfo(name, shape, ggml_type, type_name, start, n_elements, n_bytes, type_size)


def _file_size(f: BinaryIO) -> int:
    return os.fstat(f.fileno()).st_size


@functools.cache
def _quant_sizes() -> Mapping[int, tuple[str, int, int]]:
    """ggml type -> (name, elements per block, bytes per block), from the gguf package."""
    from gguf import GGML_QUANT_SIZES

    return {int(t): (t.name, block, size) for t, (block, size) in GGML_QUANT_SIZES.items()}
