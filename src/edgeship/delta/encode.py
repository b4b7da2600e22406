"""make_patch: list both files, plan, then code each op into blocks of the patch."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from edgeship.delta import generic, gguf, onnx, safetensors
from edgeship.delta.codec import Coded, code_piece, code_with_prefix
from edgeship.delta.files import pread, require_file
from edgeship.delta.format import (
    DIFFERENCES,
    Copy,
    Data,
    End,
    Header,
    Transform,
    encode_block,
)
from edgeship.delta.listing import FormatError, Kind, Listing, Segment, hash_segments
from edgeship.delta.plan import CodeOp, CopyOp, plan
from edgeship.delta.stats import PatchStats, SegmentStats
from edgeship.errors import DeltaError, UsageError
from edgeship.store.fsutil import atomic_writer

PIECE = 8 * 1024 * 1024  # bytes of target per DATA block: bounds memory, keeps zstd effective


class _Format(Protocol):
    def sniff(self, path: Path) -> bool: ...
    def regions(self, path: Path) -> list[Segment]: ...


_FORMATS: dict[str, _Format] = {"gguf": gguf, "safetensors": safetensors, "onnx": onnx}
ENCODERS = ("auto", *_FORMATS, "generic")
_CODING_NAMES = {
    Transform.PLAIN: "planes",
    Transform.SUB: "sub",
    Transform.SUB_NIBBLES: "sub-nibbles",
}


def detect(path: Path) -> str:
    """The first model format whose layout the file has, else "generic"."""
    return next((name for name, fmt in _FORMATS.items() if fmt.sniff(path)), "generic")


def _listing(encoder: str, path: Path) -> Listing:
    if encoder == "generic":
        return generic.listing(path)
    return hash_segments(path, _FORMATS[encoder].regions(path))


def _listings(old: Path, new: Path, encoder: str) -> tuple[str, Listing, Listing]:
    if encoder not in ENCODERS:
        raise UsageError(f"unknown encoder {encoder!r}; choose one of {', '.join(ENCODERS)}")
    chosen = encoder
    if encoder == "auto":
        kind = detect(new)
        chosen = kind if detect(old) == kind else "generic"
    try:
        return chosen, _listing(chosen, old), _listing(chosen, new)
    except FormatError as exc:
        if encoder != "auto":
            raise DeltaError(
                f"cannot use the {encoder} encoder: {exc}", hint="use --encoder auto or generic"
            ) from exc
        # A file that looks like a model but does not parse is still a file: diff its bytes.
        return "generic", generic.listing(old), generic.listing(new)


def _coding_name(coded: Coded) -> str:
    if coded.transform is Transform.PREFIX:
        return "prefix"
    if coded.transform is Transform.PLAIN and coded.width == 1:
        return "zstd"
    return f"{_CODING_NAMES[coded.transform]}/{coded.width}"


def _code(op: CodeOp, src: int, dst: int) -> Iterator[tuple[Data, str]]:
    """DATA blocks for one coded segment, a piece at a time so memory stays bounded."""
    seg, base = op.target, op.base
    if base is not None and seg.kind is Kind.HEADER:
        coded = code_with_prefix(
            pread(dst, seg.offset, seg.length), pread(src, base.offset, base.length)
        )
        yield (
            Data(coded.transform, 1, base.offset, base.length, seg.length, coded.payload),
            "prefix",
        )
        return
    step = PIECE - PIECE % seg.width
    for rel in range(0, seg.length, step):
        n = min(step, seg.length - rel)
        ref = pread(src, base.offset + rel, n) if base is not None else None
        coded = code_piece(pread(dst, seg.offset + rel, n), seg.width, ref)
        ref_offset, ref_length = (
            (base.offset + rel, n) if coded.transform in DIFFERENCES else (0, 0)
        )
        block = Data(coded.transform, coded.width, ref_offset, ref_length, n, coded.payload)
        yield block, _coding_name(coded)


def make_patch(old: Path, new: Path, out: Path, *, encoder: str = "auto") -> PatchStats:
    """Write a patch that turns `old` into `new`; returns what it contains."""
    old, new, out = Path(old), Path(new), Path(out)
    require_file(old, "old file")
    require_file(new, "new file")
    chosen, old_listing, new_listing = _listings(old, new, encoder)
    ops = plan(old_listing.segments, new_listing.segments)
    header = Header(
        old_listing.sha256, new_listing.sha256, old_listing.size, new_listing.size, chosen
    )
    stats = PatchStats(
        encoder=chosen,
        source_digest="sha256:" + old_listing.sha256.hex(),
        target_digest="sha256:" + new_listing.sha256.hex(),
        source_size=old_listing.size,
        target_size=new_listing.size,
    )
    with old.open("rb") as src, new.open("rb") as dst, atomic_writer(out) as f:
        f.write(header.encode())
        for op in ops:
            if isinstance(op, CopyOp):
                f.write(encode_block(Copy(op.src_offset, op.length)))
                stats.copy_ops += 1
                stats.bytes_copied += op.length
                stats.segments_copied += op.segments
                continue
            sent, codings = 0, []
            for block, coding in _code(op, src.fileno(), dst.fileno()):
                f.write(encode_block(block))
                sent += len(block.payload)
                stats.data_ops += 1
                if coding not in codings:
                    codings.append(coding)
            seg = op.target
            stats.bytes_literal += seg.length
            stats.bytes_sent += sent
            label = seg.name or ("header" if seg.kind is Kind.HEADER else "data")
            stats.segments_sent.append(
                SegmentStats(label, seg.kind.value, seg.length, sent, "+".join(codings))
            )
        f.write(encode_block(End(stats.trailer())))
    stats.patch_size = os.stat(out).st_size
    return stats
