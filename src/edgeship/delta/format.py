"""The `edgeship-delta/1` wire format: a header, then checksummed op blocks, then END.

    header  = MAGIC(16) version:u16 source_sha256(32) target_sha256(32)
              source_size:u64 target_size:u64 encoder_len:u8 encoder crc32:u32
    block   = kind:u8 body_len:u32 body crc32(kind, body_len, body):u32
    COPY    body = src_offset:u64 length:u64
    DATA    body = transform:u8 width:u16 ref_offset:u64 ref_length:u64 out_length:u64 zstd
    END     body = zstd(JSON stats)

All integers are little-endian. Every block carries its own checksum so a corrupt patch
is refused at the first bad block, before its bytes reach the output.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from edgeship.errors import DeltaError

MAGIC = b"edgeship-delta/1"
VERSION = 1

# Limits that keep a corrupt length field from allocating gigabytes: encoders never emit
# bodies or outputs larger than these, so anything bigger is corruption.
MAX_BODY = 96 * 1024 * 1024  # bytes of one block body
MAX_PIECE = 64 * 1024 * 1024  # bytes one DATA block may produce or reference

_HEADER_FIXED = struct.Struct("<16sH32s32sQQB")
_FRAME = struct.Struct("<BI")
_CRC = struct.Struct("<I")
_COPY = struct.Struct("<QQ")
_DATA = struct.Struct("<BHQQQ")

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
class Data:
    transform: Transform
    width: int
    ref_offset: int
    ref_length: int
    out_length: int
    payload: bytes


@dataclass(frozen=True)
class End:
    stats: bytes


Block = Copy | Data | End


def corrupt(what: str) -> DeltaError:
    return DeltaError(f"delta patch is corrupt: {what}", hint=FULL_BLOB_HINT)


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


def encode_block(block: Block) -> bytes:
    if isinstance(block, Copy):
        kind, body = BlockKind.COPY, _COPY.pack(block.src_offset, block.length)
    elif isinstance(block, Data):
        fields = _DATA.pack(
            block.transform, block.width, block.ref_offset, block.ref_length, block.out_length
        )
        kind, body = BlockKind.DATA, fields + block.payload
    else:
        kind, body = BlockKind.END, block.stats
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
    if kind == BlockKind.COPY and body_len == _COPY.size:
        return Copy(*_COPY.unpack(body))
    if kind == BlockKind.DATA and body_len >= _DATA.size:
        transform, width, ref_offset, ref_length, out_length = _DATA.unpack_from(body)
        if transform not in Transform._value2member_map_ or width == 0:
            raise corrupt(f"unknown DATA coding (transform {transform}, width {width})")
        return Data(
            Transform(transform), width, ref_offset, ref_length, out_length, body[_DATA.size :]
        )
    if kind == BlockKind.END:
        return End(body)
    raise corrupt(f"unknown block kind {kind} with {body_len}-byte body")
