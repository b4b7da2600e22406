"""The planner alone: segment listings in, ops out."""

from __future__ import annotations

from edgeship.delta.listing import Kind, Segment
from edgeship.delta.plan import MERGE_LIMIT, CodeOp, CopyOp, plan


def tensor(offset: int, length: int, name: str, digest: bytes, dtype: str = "F16") -> Segment:
    return Segment(offset, length, Kind.TENSOR, name, 2, dtype, digest)


def header(length: int, digest: bytes) -> Segment:
    return Segment(0, length, Kind.HEADER, "header", digest=digest)


def test_unchanged_file_is_one_copy() -> None:
    old = [header(100, b"h"), tensor(100, 50, "a", b"A"), tensor(150, 50, "b", b"B")]
    assert plan(old, old) == [CopyOp(0, 200, 3)]


def test_renamed_and_reordered_tensors_are_copied_from_where_they_were() -> None:
    old = [header(100, b"h"), tensor(100, 50, "a", b"A"), tensor(150, 70, "b", b"B")]
    new = [header(100, b"h"), tensor(100, 70, "b2", b"B"), tensor(170, 50, "a2", b"A")]
    assert plan(old, new) == [CopyOp(0, 100), CopyOp(150, 70), CopyOp(100, 50)]


def test_changed_tensor_is_coded_against_its_old_version() -> None:
    old = [header(100, b"h"), tensor(100, 50, "a", b"A")]
    new = [header(100, b"h"), tensor(100, 50, "a", b"A2")]
    assert plan(old, new) == [CopyOp(0, 100), CodeOp(new[1], old[1])]


def test_no_difference_base_when_size_or_dtype_changed() -> None:
    old = [tensor(0, 50, "a", b"A"), tensor(50, 50, "b", b"B")]
    new = [tensor(0, 40, "a", b"A2"), tensor(40, 50, "b", b"B2", dtype="Q8_0")]
    assert plan(old, new) == [CodeOp(new[0]), CodeOp(new[1])]


def test_changed_header_is_coded_against_the_old_header() -> None:
    old = [header(100, b"h"), tensor(100, 50, "a", b"A")]
    new = [header(120, b"h2"), tensor(120, 50, "a", b"A")]
    assert plan(old, new) == [CodeOp(new[0], old[0]), CopyOp(100, 50)]


def test_new_raw_bytes_merge_into_bounded_pieces() -> None:
    size = MERGE_LIMIT // 2
    new = [Segment(i * size, size, digest=bytes([i])) for i in range(3)]
    ops = plan([], new)
    assert [op.target.length for op in ops if isinstance(op, CodeOp)] == [MERGE_LIMIT, size]


def test_empty_segments_produce_no_ops() -> None:
    assert plan([], [Segment(0, 0, digest=b"")]) == []
