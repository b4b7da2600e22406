"""make_patch: list both files, plan, then code each op into blocks of the patch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from edgeship.delta import generic, gguf, onnx, safetensors
from edgeship.delta.codec import code_piece, code_with_prefix
from edgeship.delta.files import pread
from edgeship.delta.format import (
    DIFFERENCES,
    MAX_COPIES,
    Copies,
    Copy,
    Data,
    End,
    Header,
    encode_block,
)
from edgeship.delta.listing import Kind, Listing, Segment, hash_segments
from edgeship.delta.plan import CodeOp, CopyOp, Op, plan
from edgeship.delta.stats import PatchStats, Trailer, read_stats
from edgeship.errors import DeltaError, UsageError, ValidationError
from edgeship.formats.files import require_file, require_output
from edgeship.store.fsutil import atomic_writer

PIECE = 8 * 1024 * 1024  # bytes of target per DATA block: bounds memory, keeps zstd effective
HEADER_PIECE = 256 * 1024  # bytes of a header segment per DATA block (coded against old bytes)
HEADER_MARGIN = 256 * 1024  # how far header bytes may shift and still be found in the old header


class _Format(Protocol):
    def sniff(self, path: Path) -> bool: ...
    def regions(self, path: Path) -> list[Segment]: ...


_FORMATS: dict[str, _Format] = {"gguf": gguf, "safetensors": safetensors, "onnx": onnx}
ENCODERS = ("auto", *_FORMATS, "generic")


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
    except ValidationError as exc:
        if encoder != "auto":
            raise DeltaError(
                f"cannot use the {encoder} encoder: {exc.message}", hint="use --encoder auto or generic"
            ) from exc
        # A file that looks like a model but does not parse is still a file: diff its bytes.
        return "generic", generic.listing(old), generic.listing(new)


def _code(op: CodeOp, src: int, dst: int) -> Iterator[Data]:
    """DATA blocks for one coded segment, a piece at a time so memory stays bounded."""
    seg, base = op.target, op.base
    if base is not None and seg.kind is Kind.HEADER and base.length:
        yield from _code_header(seg, base, src, dst)
        return
    step = PIECE - PIECE % seg.width
    for rel in range(0, seg.length, step):
        n = min(step, seg.length - rel)
        ref = pread(src, base.offset + rel, n) if base is not None else None
        coded = code_piece(pread(dst, seg.offset + rel, n), seg.width, ref)
        ref_range = (base.offset + rel, n) if coded.transform in DIFFERENCES else (0, 0)
        yield Data(coded.transform, coded.width, *ref_range, n, coded.payload)


def _code_header(seg: Segment, base: Segment, src: int, dst: int) -> Iterator[Data]:
    """A header segment a piece at a time, each coded against the old bytes around the same place.

    The old window reaches HEADER_MARGIN bytes either side (scaled to where this piece falls
    in the old segment), so an edit that shifts the rest by less than that still costs only
    its own bytes, and coding memory depends on the piece size, never on the header's.
    """
    for rel in range(0, seg.length, HEADER_PIECE):
        n = min(HEADER_PIECE, seg.length - rel)
        centre = rel * base.length // seg.length
        lo = max(0, centre - HEADER_MARGIN)
        hi = min(base.length, centre + n + HEADER_MARGIN)
        coded = code_with_prefix(pread(dst, seg.offset + rel, n), pread(src, base.offset + lo, hi - lo))
        yield Data(coded.transform, 1, base.offset + lo, hi - lo, n, coded.payload)


def _write_ops(ops: list[Op], src: int, dst: int, f: BinaryIO) -> Trailer:
    trailer = Trailer()
    copies: list[Copy] = []
    for op in ops:
        if isinstance(op, CopyOp):
            copies.append(Copy(op.src_offset, op.length))
            trailer.segments_copied += op.segments
            if len(copies) < MAX_COPIES:
                continue
        if copies:
            f.write(encode_block(Copies(tuple(copies))))
            copies = []
        if isinstance(op, CodeOp):
            blocks = 0
            for block in _code(op, src, dst):
                f.write(encode_block(block))
                blocks += 1
            seg = op.target
            label = seg.name or ("header" if seg.kind is Kind.HEADER else "data")
            trailer.sent.append((label, seg.kind.value, blocks))
    if copies:
        f.write(encode_block(Copies(tuple(copies))))
    return trailer


def make_patch(old: Path, new: Path, out: Path, *, encoder: str = "auto") -> PatchStats:
    """Write a patch that turns `old` into `new`; returns what it contains."""
    old, new, out = Path(old), Path(new), Path(out)
    require_file(old, "old file")
    require_file(new, "new file")
    require_output(out, "patch output")
    chosen, old_listing, new_listing = _listings(old, new, encoder)
    ops = plan(old_listing.segments, new_listing.segments)
    header = Header(
        old_listing.sha256, new_listing.sha256, old_listing.size, new_listing.size, chosen
    )
    with old.open("rb") as src, new.open("rb") as dst, atomic_writer(out) as f:
        f.write(header.encode())
        trailer = _write_ops(ops, src.fileno(), dst.fileno(), f)
        f.write(encode_block(End(trailer.encode())))
    return read_stats(out)
