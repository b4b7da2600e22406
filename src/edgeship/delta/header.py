"""Coding a changed header segment (metadata, a vocabulary) against its old version.

The bytes both versions start with and end with are copied; the middle is coded in pieces,
each with zstd that may reference the old bytes around the same place (HEADER_MARGIN either
side, scaled to where the piece falls). An edit that shifts what follows by less than the
margin costs only its own bytes, and memory depends on the piece size, never on the header's.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from edgeship.delta.codec import code_with_prefix
from edgeship.delta.files import pread
from edgeship.delta.format import Copy, Data
from edgeship.delta.listing import Segment

HEADER_PIECE = 512 * 1024  # bytes of new header per DATA block
HEADER_MARGIN = 256 * 1024  # how far header bytes may shift and still be found in the old header
COMPARE_STEP = 1024 * 1024  # bytes compared at a time while finding the common ends


def _first_difference(a: bytes, b: bytes) -> int:
    """Index of the first byte where ``a`` and ``b`` differ (their shorter length if none)."""
    n = min(len(a), len(b))
    differ = np.flatnonzero(np.frombuffer(a, np.uint8, n) != np.frombuffer(b, np.uint8, n))
    return int(differ[0]) if len(differ) else n


def common_ends(src: int, base: Segment, dst: int, seg: Segment) -> tuple[int, int]:
    """Lengths of the longest common prefix and, after it, suffix of the old and new segments."""
    limit = min(base.length, seg.length)
    prefix = 0
    while prefix < limit:
        n = min(COMPARE_STEP, limit - prefix)
        same = _first_difference(pread(src, base.offset + prefix, n), pread(dst, seg.offset + prefix, n))
        prefix += same
        if same < n:
            break
    suffix = 0
    while suffix < limit - prefix:
        n = min(COMPARE_STEP, limit - prefix - suffix)
        old = pread(src, base.end - suffix - n, n)[::-1]
        new = pread(dst, seg.end - suffix - n, n)[::-1]
        same = _first_difference(old, new)
        suffix += same
        if same < n:
            break
    return prefix, suffix


def code_header(seg: Segment, base: Segment, src: int, dst: int) -> Iterator[Copy | Data]:
    """COPY the common ends, DATA for the middle, in target order."""
    prefix, suffix = common_ends(src, base, dst, seg)
    if prefix:
        yield Copy(base.offset, prefix)
    old_len = base.length - prefix - suffix
    new_start, new_len = seg.offset + prefix, seg.length - prefix - suffix
    for rel in range(0, new_len, HEADER_PIECE):
        n = min(HEADER_PIECE, new_len - rel)
        centre = base.offset + prefix + rel * old_len // new_len
        # The window may reach into the common ends: an insertion has no old middle at all.
        lo, hi = max(base.offset, centre - HEADER_MARGIN), min(base.end, centre + n + HEADER_MARGIN)
        coded = code_with_prefix(pread(dst, new_start + rel, n), pread(src, lo, hi - lo))
        yield Data(coded.transform, 1, lo, hi - lo, n, coded.payload)
    if suffix:
        yield Copy(base.end - suffix, suffix)
