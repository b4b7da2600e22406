"""Pure planning: two segment listings in, a list of ops out. No I/O, so tests drive it directly."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace

from edgeship.delta.format import MAX_PIECE
from edgeship.delta.listing import Kind, Segment

MERGE_LIMIT = 8 * 1024 * 1024  # unnamed new bytes are gathered into pieces up to this size


@dataclass(frozen=True)
class CopyOp:
    """Target bytes equal to source[src_offset : src_offset + length]."""

    src_offset: int
    length: int
    segments: int = 1  # how many segments this copy covers (for stats)


@dataclass(frozen=True)
class CodeOp:
    """Target segment sent as DATA, optionally coded against a source segment."""

    target: Segment
    base: Segment | None = None  # same-named old tensor (difference) or old header (prefix)


Op = CopyOp | CodeOp


@dataclass
class _Planner:
    by_digest: dict[bytes, list[Segment]]
    by_name: dict[tuple[Kind, str], Segment]
    ops: list[Op] = field(default_factory=list)

    def add_copy(self, src: Segment) -> None:
        last = self.ops[-1] if self.ops else None
        if isinstance(last, CopyOp) and last.src_offset + last.length == src.offset:
            self.ops[-1] = CopyOp(last.src_offset, last.length + src.length, last.segments + 1)
        else:
            self.ops.append(CopyOp(src.offset, src.length))

    def add_code(self, target: Segment, base: Segment | None) -> None:
        last = self.ops[-1] if self.ops else None
        if (
            base is None
            and target.kind is Kind.RAW
            and isinstance(last, CodeOp)
            and last.base is None
            and last.target.kind is Kind.RAW
            and last.target.end == target.offset
            and last.target.length + target.length <= MERGE_LIMIT
        ):
            merged = replace(last.target, length=last.target.length + target.length)
            self.ops[-1] = CodeOp(merged)
        else:
            self.ops.append(CodeOp(target, base))

    def source_for(self, seg: Segment) -> Segment | None:
        """An old segment with the same bytes, preferring one that extends the last copy."""
        matches = self.by_digest.get(seg.digest)
        if not matches:
            return None
        last = self.ops[-1] if self.ops else None
        if isinstance(last, CopyOp):
            for m in matches:
                if m.offset == last.src_offset + last.length:
                    return m
        same_name = [m for m in matches if m.name == seg.name]
        return (same_name or matches)[0]

    def base_for(self, seg: Segment) -> Segment | None:
        old = self.by_name.get((seg.kind, seg.name))
        if old is None:
            return None
        if seg.kind is Kind.HEADER:
            fits = old.length <= MAX_PIECE and seg.length <= MAX_PIECE
            return old if fits else None
        if seg.kind is Kind.TENSOR and old.length == seg.length and old.dtype == seg.dtype:
            return old
        return None


def plan(old: list[Segment], new: list[Segment]) -> list[Op]:
    """Ops that build `new` from `old`: equal bytes anywhere → COPY, the rest coded."""
    by_digest: dict[bytes, list[Segment]] = defaultdict(list)
    for seg in old:
        by_digest[seg.digest].append(seg)
    by_name = {(s.kind, s.name): s for s in old if s.kind is not Kind.RAW}
    planner = _Planner(dict(by_digest), by_name)
    for seg in new:
        if not seg.length:
            continue
        src = planner.source_for(seg)
        if src is not None:
            planner.add_copy(src)
        else:
            planner.add_code(seg, planner.base_for(seg))
    return planner.ops
