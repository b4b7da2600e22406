"""What a patch contains: op counts, bytes copied vs sent, and which segments were sent."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import zstandard as zstd

from edgeship.delta.format import Header, corrupt

_FROM_HEADER = frozenset(
    {"encoder", "source_digest", "target_digest", "source_size", "target_size", "patch_size"}
)


@dataclass
class SegmentStats:
    """One target segment that was sent (copied segments are only counted)."""

    name: str  # tensor name, "header", or "data" for unnamed bytes
    kind: str
    size: int  # bytes in the target
    sent: int  # compressed payload bytes in the patch
    coding: str  # e.g. "plain", "planes/2", "sub/2", "prefix"; "+"-joined if pieces differ


@dataclass
class PatchStats:
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

    def trailer(self) -> bytes:
        """The END block body: everything the header and file size do not already say."""
        body = {k: v for k, v in self.to_dict().items() if k not in _FROM_HEADER}
        return zstd.ZstdCompressor(level=19).compress(json.dumps(body).encode())

    @classmethod
    def from_trailer(cls, header: Header, trailer: bytes, patch_size: int) -> PatchStats:
        try:
            body = json.loads(zstd.ZstdDecompressor().decompress(trailer, max_output_size=1 << 28))
            sent = [SegmentStats(**s) for s in body.pop("segments_sent")]
            return cls(
                encoder=header.encoder,
                source_digest="sha256:" + header.source_digest.hex(),
                target_digest="sha256:" + header.target_digest.hex(),
                source_size=header.source_size,
                target_size=header.target_size,
                patch_size=patch_size,
                segments_sent=sent,
                **body,
            )
        except (zstd.ZstdError, ValueError, TypeError, KeyError) as exc:
            raise corrupt(f"statistics block is unreadable ({exc})") from exc
