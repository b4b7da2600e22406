"""What an encoder knows about a file: its digest and the segments (tensors, headers) in it."""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from edgeship.errors import DeltaError, ValidationError

READ_SIZE = 8 * 1024 * 1024  # bytes per read while hashing


class Kind(enum.Enum):
    HEADER = "header"  # format metadata: coded against the old header
    TENSOR = "tensor"  # one tensor's bytes: coded against the old tensor of the same name
    RAW = "raw"  # anything else: padding, protobuf glue, content-defined chunks


@dataclass(frozen=True)
class Segment:
    offset: int
    length: int
    kind: Kind = Kind.RAW
    name: str = ""
    width: int = 1  # element width in bytes: the byte-plane width when coding
    dtype: str = ""  # a changed tensor is coded against an old one with the same dtype
    digest: bytes = b""

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True)
class Listing:
    size: int
    sha256: bytes
    segments: list[Segment]


def segment_digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(READ_SIZE):
            digest.update(block)
    return digest.digest()


def cover(regions: Iterable[Segment], size: int) -> list[Segment]:
    """Sort regions, check they do not overlap, and fill the gaps with RAW segments."""
    out: list[Segment] = []
    pos = 0
    for region in sorted(regions, key=lambda r: r.offset):
        if region.offset < pos or region.end > size:
            raise ValidationError(f"region {region.name or region.kind.value} overlaps or overruns")
        if region.offset > pos:
            out.append(Segment(pos, region.offset - pos))
        if region.length:
            width = region.width if region.length % region.width == 0 else 1
            out.append(replace(region, width=width))
        pos = region.end
    if pos < size:
        out.append(Segment(pos, size - pos))
    return out


def hash_segments(path: Path, regions: Iterable[Segment]) -> Listing:
    """One sequential pass: the file's sha256 and a digest for every segment."""
    size = path.stat().st_size
    segments = cover(regions, size)
    whole = hashlib.sha256()
    hashed: list[Segment] = []
    with path.open("rb") as f:
        for seg in segments:
            digest = hashlib.blake2b(digest_size=16)
            remaining = seg.length
            while remaining:
                block = f.read(min(READ_SIZE, remaining))
                if not block:
                    raise DeltaError(f"{path.name} changed while it was being read", hint="make sure nothing else writes the file, then retry")
                digest.update(block)
                whole.update(block)
                remaining -= len(block)
            hashed.append(replace(seg, digest=digest.digest()))
    return Listing(size, whole.digest(), hashed)
