"""The `edgeship-delta/1` wire format: a header, then checksummed op blocks, then END.

    header  = MAGIC(16) version:u16 source_sha256(32) target_sha256(32)
              source_size:u64 target_size:u64 encoder_len:u8 encoder crc32:u32
    block   = kind:u8 body_len:u32 body crc32(kind, body_len, body):u32
    COPY    body = packing:u8 ops        ops = (zigzag(src_offset - previous end), length)*
                                         as varints; packing 1 = zstd-compressed
    DATA    body = transform width ref_offset ref_length out_length (varints) zstd-payload
    END     body = trailer (JSON, zstd-compressed when that is smaller): names of what was sent

Fixed-size integers are little-endian. A COPY block carries many copies so a reordered
model costs bytes per tensor, not a block each. Every block has its own checksum so a
corrupt patch is refused at the first bad block, before its bytes reach the output.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

import zstandard as zstd

from edgeship.errors import DeltaError

MAGIC = b"edgeship-delta/1"
VERSION = 1

# Limits that keep a corrupt length field from allocating gigabytes: encoders never emit
# bodies or outputs larger than these, so anything bigger is corruption.
MAX_BODY = 96 * 1024 * 1024  # bytes of one block body
MAX_PIECE = 64 * 1024 * 1024  # bytes one DATA block may produce or reference
MAX_COPIES = 4096  # copies per COPY block

_HEADER_FIXED = struct.Struct("<16sH32s32sQQB")
_FRAME = struct.Struct("<BI")
_CRC = struct.Struct("<I")
_RAW, _ZSTD = 0, 1

FULL_BLOB_HINT = "download the full blob instead"


class BlockKind(enum.IntEnum):
    COPY = 1
    DATA = 2
    END = 3


class Transform(enum.IntEnum):
    """How a DATA block's decompressed bytes become output bytes."""

    PLAIN = 0  # output = planes⁻¹(zstd⁻¹(payload))
    PREFIX = 1  # like PLAIN, but zstd used source[ref] as a raw-content dictionary
    SUB = 2  # output = source[ref] + zigzag⁻¹(planes⁻¹(zstd⁻¹(payload))), per `width` int
    SUB_NIBBLES = 3  # like SUB, with nibbles⁻¹ between zstd⁻¹ and planes⁻¹


DIFFERENCES = frozenset({Transform.SUB, Transform.SUB_NIBBLES})  # coded against source[ref]


@dataclass(frozen=True)
class Header:
    source_digest: bytes
    target_digest: bytes
    source_size: int
    target_size: int
    encoder: str

    def encode(self) -> bytes:
        name = self.encoder.encode()
        fixed = _HEADER_FIXED.pack(
            MAGIC,
            VERSION,
            self.source_digest,
            self.target_digest,
            self.source_size,
            self.target_size,
            len(name),
        )
        body = fixed + name
        return body + _CRC.pack(zlib.crc32(body))


@dataclass(frozen=True)
class Copy:
    src_offset: int
    length: int


@dataclass(frozen=True)
class Copies:
    ops: tuple[Copy, ...]


@dataclass(frozen=True)
class Data:
    transform: Transform
    width: int
    ref_offset: int
    ref_length: int
    out_length: int
    payload: bytes


@dataclass(frozen=True)
class End:
    trailer: bytes


Block = Copies | Data | End


def corrupt(what: str) -> DeltaError:
    return DeltaError(f"delta patch is corrupt: {what}", hint=FULL_BLOB_HINT)


def _varints(values: list[int]) -> bytes:
    out = bytearray()
    for v in values:
        while v >= 0x80:
            out.append((v & 0x7F) | 0x80)
            v >>= 7
        out.append(v)
    return bytes(out)


class _VarintReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def done(self) -> bool:
        return self.pos >= len(self.data)

    def next(self) -> int:
        result = shift = 0
        while self.pos < len(self.data) and shift < 70:
            b = self.data[self.pos]
            self.pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result
            shift += 7
        raise corrupt("block field is cut off")


def _zigzag(n: int) -> int:
    return 2 * n if n >= 0 else -2 * n - 1


def _unzigzag(z: int) -> int:
    return z // 2 if z % 2 == 0 else -(z + 1) // 2


def pack(raw: bytes) -> bytes:
    """The smaller of `raw` and its zstd frame, behind a one-byte marker."""
    squeezed = zstd.ZstdCompressor(level=19).compress(raw)
    return bytes([_ZSTD]) + squeezed if len(squeezed) < len(raw) else bytes([_RAW]) + raw


def unpack(body: bytes) -> bytes:
    if not body or body[0] not in (_RAW, _ZSTD):
        raise corrupt("unknown packing of a block body")
    if body[0] == _RAW:
        return body[1:]
    try:
        return zstd.ZstdDecompressor().decompress(body[1:], max_output_size=MAX_BODY)
    except zstd.ZstdError:
        raise corrupt("a block body's zstd frame is damaged or larger than the format allows") from None


def _read_exact(stream: BinaryIO, n: int, what: str) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise corrupt(f"truncated in {what}")
    return data


def read_header(stream: BinaryIO) -> Header:
    fixed = _read_exact(stream, _HEADER_FIXED.size, "header")
    magic, version, src, dst, src_size, dst_size, name_len = _HEADER_FIXED.unpack(fixed)
    if magic != MAGIC:
        raise DeltaError("not an edgeship-delta/1 patch (bad magic)", hint=FULL_BLOB_HINT)
    if version != VERSION:
        raise DeltaError(
            f"delta format version {version} is not supported (this build reads {VERSION})",
            hint=FULL_BLOB_HINT,
        )
    name = _read_exact(stream, name_len, "header")
    (crc,) = _CRC.unpack(_read_exact(stream, _CRC.size, "header"))
    if crc != zlib.crc32(fixed + name):
        raise corrupt("header checksum mismatch")
    try:
        encoder = name.decode()
    except UnicodeDecodeError as exc:
        raise corrupt("encoder name is not UTF-8") from exc
    return Header(src, dst, src_size, dst_size, encoder)


def _copies_body(copies: Copies) -> bytes:
    fields: list[int] = []
    end = 0
    for op in copies.ops:
        fields += [_zigzag(op.src_offset - end), op.length]
        end = op.src_offset + op.length
    return pack(_varints(fields))


def _parse_copies(body: bytes) -> Copies:
    reader = _VarintReader(unpack(body))
    ops: list[Copy] = []
    end = 0
    while not reader.done():
        offset = end + _unzigzag(reader.next())
        length = reader.next()
        if offset < 0 or len(ops) >= MAX_COPIES:
            raise corrupt("COPY block has a negative offset or too many copies")
        ops.append(Copy(offset, length))
        end = offset + length
    return Copies(tuple(ops))


def _parse_data(body: bytes) -> Data:
    reader = _VarintReader(body)
    transform, width, ref_offset, ref_length, out_length = (reader.next() for _ in range(5))
    if transform not in Transform._value2member_map_ or width == 0:
        raise corrupt(f"unknown DATA coding (transform {transform}, width {width})")
    return Data(Transform(transform), width, ref_offset, ref_length, out_length, body[reader.pos :])


def encode_block(block: Block) -> bytes:
    if isinstance(block, Copies):
        kind, body = BlockKind.COPY, _copies_body(block)
    elif isinstance(block, Data):
        fields = [block.transform, block.width, block.ref_offset, block.ref_length]
        kind, body = BlockKind.DATA, _varints([*fields, block.out_length]) + block.payload
    else:
        kind, body = BlockKind.END, block.trailer
    framed = _FRAME.pack(kind, len(body)) + body
    return framed + _CRC.pack(zlib.crc32(framed))


def read_block(stream: BinaryIO) -> Block:
    frame = _read_exact(stream, _FRAME.size, "block frame")
    kind, body_len = _FRAME.unpack(frame)
    if body_len > MAX_BODY:
        raise corrupt(f"block body of {body_len} bytes exceeds the format limit")
    body = _read_exact(stream, body_len, "block body")
    (crc,) = _CRC.unpack(_read_exact(stream, _CRC.size, "block checksum"))
    if crc != zlib.crc32(body, zlib.crc32(frame)):
        raise corrupt("block checksum mismatch")
    if kind == BlockKind.COPY:
        return _parse_copies(body)
    if kind == BlockKind.DATA:
        return _parse_data(body)
    if kind == BlockKind.END:
        return End(body)
    raise corrupt(f"unknown block kind {kind} with {body_len}-byte body")
