"""make_patch: list both files, plan, then code each op into blocks of the patch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from edgeship.delta import generic, gguf, onnx, safetensors
from edgeship.delta.codec import code_piece
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
from edgeship.delta.header import code_header
from edgeship.delta.listing import Kind, Listing, Segment, hash_segments
from edgeship.delta.plan import CodeOp, CopyOp, Op, plan
from edgeship.delta.stats import PatchStats, Trailer, read_stats
from edgeship.errors import DeltaError, UsageError, ValidationError
from edgeship.formats.files import require_file, require_output
from edgeship.store.fsutil import atomic_writer

PIECE = 8 * 1024 * 1024  # bytes of target per DATA block: bounds memory, keeps zstd effective


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


def _code(op: CodeOp, src: int, dst: int) -> Iterator[Copy | Data]:
    """Blocks for one coded segment, a piece at a time so memory stays bounded."""
    seg, base = op.target, op.base
    if base is not None and seg.kind is Kind.HEADER and base.length:
        yield from code_header(seg, base, src, dst)
        return
    step = PIECE - PIECE % seg.width
    for rel in range(0, seg.length, step):
        n = min(step, seg.length - rel)
        ref = pread(src, base.offset + rel, n) if base is not None else None
        coded = code_piece(pread(dst, seg.offset + rel, n), seg.width, ref)
        ref_range = (base.offset + rel, n) if coded.transform in DIFFERENCES else (0, 0)
        yield Data(coded.transform, coded.width, *ref_range, n, coded.payload)


class _Writer:
    """Writes blocks, gathering consecutive copies into COPY blocks of up to MAX_COPIES."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.copies: list[Copy] = []

    def copy(self, op: Copy) -> None:
        self.copies.append(op)
        if len(self.copies) == MAX_COPIES:
            self.flush()

    def data(self, block: Data) -> None:
        self.flush()
        self.f.write(encode_block(block))

    def flush(self) -> None:
        if self.copies:
            self.f.write(encode_block(Copies(tuple(self.copies))))
            self.copies = []


def _write_ops(ops: list[Op], src: int, dst: int, f: BinaryIO) -> Trailer:
    trailer = Trailer()
    out = _Writer(f)
    for op in ops:
        if isinstance(op, CopyOp):
            out.copy(Copy(op.src_offset, op.length))
            trailer.segments_copied += op.segments
            continue
        blocks = 0
        for block in _code(op, src, dst):
            if isinstance(block, Copy):
                out.copy(block)
            else:
                out.data(block)
                blocks += 1
        seg = op.target
        if blocks:
            trailer.sent.append((seg.name or ("header" if seg.kind is Kind.HEADER else "data"), seg.kind.value, blocks))
        else:  # a header segment whose bytes all came from its common ends
            trailer.segments_copied += 1
    out.flush()
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
