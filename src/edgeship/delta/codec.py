"""Coding one piece of bytes into a DATA block, and back.

Dense weights barely compress as they are; they compress when split into byte planes
(all sign/exponent bytes together, then the mantissa bytes) and, for a tensor that changed
slightly, when coded as the difference to its old version (small integers, zigzagged so
that -1 and +1 both become small positive numbers). Differences of a few units are split
further into 4-bit planes: zstd's Huffman coder spends at least one bit per byte, so a byte
holding ~2.7 bits of information costs ~3.2 bits, while two packed nibbles cost ~5.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import zstandard as zstd

from edgeship.delta.format import DIFFERENCES, MAX_PIECE, Data, Transform, corrupt

TENSOR_LEVEL = 9  # measured: level 9 byte planes ≈ bsdiff size at ~25× its speed
HEADER_LEVEL = 12  # measured: level 19 saves ~10% of a few hundred bytes at 40x the time

_INT_TYPES: dict[int, tuple[type[np.signedinteger], type[np.unsignedinteger]]] = {
    1: (np.int8, np.uint8),
    2: (np.int16, np.uint16),
    4: (np.int32, np.uint32),
    8: (np.int64, np.uint64),
}


@dataclass(frozen=True)
class Coded:
    transform: Transform
    width: int
    payload: bytes


def to_planes(data: bytes, width: int) -> bytes:
    """Byte i of every element together: a (n, width) matrix read column by column."""
    if width == 1:
        return data
    return np.frombuffer(data, np.uint8).reshape(-1, width).T.tobytes()


def from_planes(data: bytes, width: int) -> bytes:
    if width == 1:
        return data
    return np.frombuffer(data, np.uint8).reshape(width, -1).T.tobytes()


def to_nibbles(data: bytes) -> bytes:
    """Low nibbles packed two to a byte, then high nibbles likewise (odd lengths pad a 0)."""
    a = np.frombuffer(data, np.uint8)
    if len(a) % 2:
        a = np.append(a, np.uint8(0))
    lo, hi = a & 0x0F, a >> 4
    return ((lo[0::2] | (lo[1::2] << 4)).tobytes()) + (hi[0::2] | (hi[1::2] << 4)).tobytes()


def from_nibbles(data: bytes, length: int) -> bytes:
    a = np.frombuffer(data, np.uint8)
    half = len(a) // 2
    lo = np.empty(2 * half, np.uint8)
    hi = np.empty(2 * half, np.uint8)
    lo[0::2], lo[1::2] = a[:half] & 0x0F, a[:half] >> 4
    hi[0::2], hi[1::2] = a[half:] & 0x0F, a[half:] >> 4
    return (lo | (hi << 4))[:length].tobytes()


def nibbled_length(length: int) -> int:
    return length + length % 2


def sub_width(width: int) -> int:
    """The integer width used to subtract elements of `width` bytes (bytes for odd sizes)."""
    return width if width in _INT_TYPES else 1


def zigzag_sub(new: bytes, old: bytes, width: int) -> bytes:
    signed, unsigned = _INT_TYPES[width]
    bits = 8 * width
    diff = np.frombuffer(new, unsigned) - np.frombuffer(old, unsigned)
    as_signed = diff.view(signed)
    return ((as_signed << 1) ^ (as_signed >> (bits - 1))).view(unsigned).tobytes()


def zigzag_add(old: bytes, coded: bytes, width: int) -> bytes:
    signed, unsigned = _INT_TYPES[width]
    z = np.frombuffer(coded, unsigned)
    diff = (z >> 1) ^ (-(z & 1).view(signed)).view(unsigned)
    return (np.frombuffer(old, unsigned) + diff).tobytes()


def _prefix_dict(ref: bytes) -> zstd.ZstdCompressionDict:
    return zstd.ZstdCompressionDict(ref, dict_type=zstd.DICT_TYPE_RAWCONTENT)


def code_piece(new: bytes, width: int, base: bytes | None) -> Coded:
    """The smallest of: plain, byte planes, and (with a same-size base) the planed difference.

    Candidates are built one at a time and losers dropped at once: peak memory is a few
    copies of the piece, not one per candidate.
    """
    compressor = zstd.ZstdCompressor(level=TENSOR_LEVEL)
    best = Coded(Transform.PLAIN, 1, compressor.compress(new))

    def consider(transform: Transform, w: int, data: bytes) -> None:
        nonlocal best
        payload = compressor.compress(data)
        if len(payload) < len(best.payload):
            best = Coded(transform, w, payload)

    if width > 1 and len(new) % width == 0:
        consider(Transform.PLAIN, width, to_planes(new, width))
    if base is not None:
        w = sub_width(width)
        planes = to_planes(zigzag_sub(new, base, w), w)
        consider(Transform.SUB, w, planes)
        consider(Transform.SUB_NIBBLES, w, to_nibbles(planes))
    return best


def code_with_prefix(new: bytes, ref: bytes) -> Coded:
    """Code `new` with zstd that may reference any byte of `ref` (e.g. the old header)."""
    # The window must span the whole reference, or zstd silently ignores the part of it
    # beyond the level's default window (4 MiB at level 12) and re-sends a large header.
    window_log = max(10, (len(ref) + len(new) - 1).bit_length())  # the smallest power of two that holds both
    # Match-finder tables no larger than the window: every reference byte stays reachable, and
    # memory follows the input (a few MiB for a header piece) rather than the level's 48 MiB.
    full = zstd.ZstdCompressionParameters.from_level(HEADER_LEVEL)
    params = zstd.ZstdCompressionParameters.from_level(
        HEADER_LEVEL,
        window_log=window_log,
        hash_log=min(full.hash_log, window_log),
        chain_log=min(full.chain_log, window_log),
        source_size=len(new),
    )
    compressor = zstd.ZstdCompressor(compression_params=params, dict_data=_prefix_dict(ref))
    return Coded(Transform.PREFIX, 1, compressor.compress(new))


def decode_piece(block: Data, ref: bytes) -> bytes:
    """Output bytes of a DATA block; `ref` is source[ref_offset : ref_offset + ref_length]."""
    dict_data = _prefix_dict(ref) if block.transform == Transform.PREFIX else None
    nibbles = block.transform == Transform.SUB_NIBBLES
    coded_length = nibbled_length(block.out_length) if nibbles else block.out_length
    try:
        # The frame's declared size is checked first so a bad one cannot size an allocation.
        if zstd.frame_content_size(block.payload) != coded_length:
            raise corrupt("DATA block size does not match its compressed frame")
        raw = zstd.ZstdDecompressor(dict_data=dict_data).decompress(
            block.payload, max_output_size=MAX_PIECE
        )
    except zstd.ZstdError:
        raise corrupt("a DATA block's zstd frame is damaged or needs another reference") from None
    if len(raw) != coded_length:
        raise corrupt("DATA block decompressed to the wrong size")
    unplaned = from_planes(from_nibbles(raw, block.out_length) if nibbles else raw, block.width)
    if block.transform in DIFFERENCES:
        return zigzag_add(ref, unplaned, block.width)
    return unplaned


def check_data_block(block: Data) -> None:
    """Refuse shapes the encoder never writes, before any memory is spent on them."""
    if block.out_length > MAX_PIECE or block.ref_length > MAX_PIECE:
        raise corrupt("DATA block larger than the format allows")
    if block.out_length % block.width:
        raise corrupt("DATA block length is not a multiple of its element width")
    if block.transform == Transform.PLAIN and block.ref_length:
        raise corrupt("plain DATA block names a reference range")
    if block.transform in DIFFERENCES and (
        block.width not in _INT_TYPES or block.ref_length != block.out_length
    ):
        raise corrupt("difference DATA block does not match its reference")
