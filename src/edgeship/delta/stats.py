"""What a patch contains: op counts, bytes copied vs sent, and which segments were sent.

Counts and sizes are read back from the blocks themselves; the END trailer adds only what
blocks cannot say (segment names), so the statistics can never disagree with the patch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeship.delta.format import (
    Copies,
    End,
    Transform,
    corrupt,
    pack,
    read_block,
    read_header,
    unpack,
)
from edgeship.formats.files import require_file

_CODING_NAMES = {
    Transform.PLAIN: "planes",
    Transform.SUB: "sub",
    Transform.SUB_NIBBLES: "sub-nibbles",
}


def coding_name(transform: Transform, width: int) -> str:
    """e.g. "zstd", "planes/2", "sub-nibbles/2", "prefix"."""
    if transform is Transform.PREFIX:
        return "prefix"
    if transform is Transform.PLAIN and width == 1:
        return "zstd"
    return f"{_CODING_NAMES[transform]}/{width}"


@dataclass
class SegmentStats:
    """One target segment that was sent (copied segments are only counted)."""

    name: str  # tensor name, "header", or "data" for unnamed bytes
    kind: str
    size: int = 0  # bytes in the target
    sent: int = 0  # compressed payload bytes in the patch
    coding: str = ""  # "+"-joined when its pieces were coded differently


@dataclass
class PatchStats:
    """A patch's header facts, op counts and per-segment breakdown."""

    encoder: str
    source_digest: str
    target_digest: str
    source_size: int
    target_size: int
    patch_size: int = 0
    copy_ops: int = 0
    data_ops: int = 0
    bytes_copied: int = 0  # target bytes taken from the source
    bytes_literal: int = 0  # target bytes produced by DATA blocks
    bytes_sent: int = 0  # compressed DATA payload bytes
    segments_copied: int = 0
    segments_sent: list[SegmentStats] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Trailer:
    """The END block: how many segments were copied, and each sent one's DATA block count."""

    segments_copied: int = 0
    sent: list[tuple[str, str, int]] = field(default_factory=list)  # (name, kind, blocks)

    def encode(self) -> bytes:
        doc = {"copied": self.segments_copied, "sent": self.sent}
        return pack(json.dumps(doc, separators=(",", ":")).encode())

    @classmethod
    def decode(cls, body: bytes) -> Trailer:
        try:
            doc = json.loads(unpack(body))
            sent = [(str(name), str(kind), int(n)) for name, kind, n in doc["sent"]]
            return cls(int(doc["copied"]), sent)
        except (ValueError, TypeError, KeyError, RecursionError):
            raise corrupt("its END block's trailer is not the segment list the encoder writes") from None


def read_stats(patch: Path) -> PatchStats:
    """The statistics of a patch (its blocks are checksum-verified on the way)."""
    patch = Path(patch)
    require_file(patch, "patch")
    with patch.open("rb") as p:
        header = read_header(p)
        stats = PatchStats(
            encoder=header.encoder,
            source_digest="sha256:" + header.source_digest.hex(),
            target_digest="sha256:" + header.target_digest.hex(),
            source_size=header.source_size,
            target_size=header.target_size,
            patch_size=patch.stat().st_size,
        )
        pieces: list[tuple[int, int, str]] = []  # per DATA block: size, sent, coding
        while not isinstance(block := read_block(p), End):
            if isinstance(block, Copies):
                stats.copy_ops += len(block.ops)
                stats.bytes_copied += sum(op.length for op in block.ops)
            else:
                coding = coding_name(block.transform, block.width)
                pieces.append((block.out_length, len(block.payload), coding))
        trailer = Trailer.decode(block.trailer)
    if sum(n for _, _, n in trailer.sent) != len(pieces):
        raise corrupt("trailer does not account for every DATA block")
    stats.data_ops = len(pieces)
    stats.bytes_literal = sum(size for size, _, _ in pieces)
    stats.bytes_sent = sum(sent for _, sent, _ in pieces)
    stats.segments_copied = trailer.segments_copied
    start = 0
    for name, kind, n in trailer.sent:
        seg = SegmentStats(name, kind)
        for size, sent, coding in pieces[start : start + n]:
            seg.size += size
            seg.sent += sent
            if coding not in seg.coding.split("+"):
                seg.coding = f"{seg.coding}+{coding}" if seg.coding else coding
        stats.segments_sent.append(seg)
        start += n
    return stats
