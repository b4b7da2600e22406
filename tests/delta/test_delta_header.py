"""Header segments: common ends copied, the middle coded against nearby old bytes, exactly rebuilt."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from edgeship.delta.codec import decode_piece
from edgeship.delta.format import Copy
from edgeship.delta.header import HEADER_MARGIN, HEADER_PIECE, code_header, common_ends
from edgeship.delta.listing import Kind, Segment

VOCAB = b"".join(b"\xe2\x96\x81tok%06d" % i for i in range(200_000))  # ~2.4 MB, like a vocabulary


def rebuild(old: bytes, new: bytes, tmp_path: Path) -> tuple[bytes, int]:
    """Code ``new`` against ``old`` as header segments, then rebuild it from the blocks alone."""
    (tmp_path / "old").write_bytes(b"pad" + old)
    (tmp_path / "new").write_bytes(b"header" + new)
    src, dst = os.open(tmp_path / "old", os.O_RDONLY), os.open(tmp_path / "new", os.O_RDONLY)
    try:
        base, seg = Segment(3, len(old), Kind.HEADER, "kv"), Segment(6, len(new), Kind.HEADER, "kv")
        out, sent = b"", 0
        source = (tmp_path / "old").read_bytes()
        for block in code_header(seg, base, src, dst):
            if isinstance(block, Copy):
                out += source[block.src_offset : block.src_offset + block.length]
            else:
                assert block.ref_length <= HEADER_PIECE + 2 * HEADER_MARGIN  # memory follows the piece
                out += decode_piece(block, source[block.ref_offset : block.ref_offset + block.ref_length])
                sent += len(block.payload)
        return out, sent
    finally:
        os.close(src)
        os.close(dst)


def test_common_ends(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"abcXYZdef")
    (tmp_path / "b").write_bytes(b"abcdef")
    a, b = os.open(tmp_path / "a", os.O_RDONLY), os.open(tmp_path / "b", os.O_RDONLY)
    try:
        assert common_ends(a, Segment(0, 9), b, Segment(0, 6)) == (3, 3)
        assert common_ends(a, Segment(0, 3), b, Segment(0, 3)) == (3, 0)  # equal: all prefix
        assert common_ends(a, Segment(3, 3), b, Segment(0, 3)) == (0, 0)
    finally:
        os.close(a)
        os.close(b)


@pytest.mark.parametrize(
    "edit",
    ["replace one token", "insert a token at the start", "delete a token", "pure insertion", "grow by 600 KiB", "shrink to a tenth"],
)
def test_edits_rebuild_exactly_and_cost_only_the_change(edit: str, tmp_path: Path) -> None:
    old = VOCAB
    mid = len(old) // 2
    new = {
        "replace one token": old[:mid] + b"EDGESHIP" + old[mid + 8 :],
        "insert a token at the start": b"\xe2\x96\x81edgeship" + old,
        "delete a token": old[:mid] + old[mid + 12 :],
        "pure insertion": old[:mid] + b"!" + old[mid:],
        "grow by 600 KiB": old[:mid] + random.Random(1).randbytes(600 * 1024) + old[mid:],
        "shrink to a tenth": old[: len(old) // 10],
    }[edit]
    rebuilt, sent = rebuild(old, new, tmp_path)
    assert rebuilt == new
    if edit == "grow by 600 KiB":
        assert sent < 620 * 1024  # random bytes do not compress; the rest is found
    else:
        assert sent < 512  # bytes, for a 2.4 MB segment
