"""Fallback for any file: content-defined chunks (FastCDC-style gear hash), equal chunks copied.

Cut points depend only on the 32 bytes before them, so an insertion shifts the chunks after
it without changing them, and unchanged chunks still match by digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edgeship.delta.listing import Listing, Segment, segment_digest

CHUNK_READ = 1024 * 1024  # bytes hashed at a time: the gear hash needs ~12 bytes of arrays per byte
MIN_CHUNK = 8 * 1024  # bytes
MAX_CHUNK = 128 * 1024  # bytes
_CUT_MASK = np.uint32(((1 << 14) - 1) << 18)  # 14 high bits zero: a cut every ~16 KiB past MIN
_WINDOW = 32  # bytes that decide a cut point
# Fixed seed: both files of a patch must be chunked with the same table.
_GEAR = np.random.default_rng(0x6564_6765).integers(0, 1 << 32, 256, dtype=np.uint32)


def gear_hashes(data: np.ndarray) -> np.ndarray:
    """h[i] = Σ_{k<32} gear[data[i-k]] << k (mod 2³²), by doubling the window five times."""
    h = _GEAR[data]
    span = 1
    while span < _WINDOW:
        shifted = np.zeros_like(h)
        shifted[span:] = h[:-span] << np.uint32(span)
        h += shifted
        span *= 2
    return h


def chunks(stream: BinaryIO) -> Iterator[bytes]:
    """Content-defined chunks of a stream, reading CHUNK_READ bytes at a time."""
    carry = b""  # bytes after the last cut, always shorter than MAX_CHUNK
    history = np.zeros(_WINDOW - 1, np.uint8)  # the bytes before this read, for the hash
    while block := stream.read(CHUNK_READ):
        arr = np.frombuffer(block, np.uint8)
        hashes = gear_hashes(np.concatenate([history, arr]))[_WINDOW - 1 :]
        history = np.concatenate([history, arr])[-(_WINDOW - 1) :]
        data = carry + block
        # A cut after byte i of the read is a cut at position len(carry) + i + 1 of `data`.
        cuts = np.flatnonzero((hashes & _CUT_MASK) == 0) + len(carry) + 1
        start = 0
        while True:
            i = int(np.searchsorted(cuts, start + MIN_CHUNK))
            cut = int(cuts[i]) if i < len(cuts) else len(data) + MAX_CHUNK
            cut = min(cut, start + MAX_CHUNK)
            if cut > len(data):
                break
            yield data[start:cut]
            start = cut
        carry = data[start:]
    if carry:
        yield carry


def listing(path: Path) -> Listing:
    whole = hashlib.sha256()
    segments: list[Segment] = []
    offset = 0
    with path.open("rb") as f:
        for chunk in chunks(f):
            whole.update(chunk)
            segments.append(Segment(offset, len(chunk), digest=segment_digest(chunk)))
            offset += len(chunk)
    return Listing(offset, whole.digest(), segments)
