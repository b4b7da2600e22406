"""Content-defined chunking and the generic encoder on arbitrary bytes."""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeship.delta import PatchStats
from edgeship.delta.generic import MAX_CHUNK, MIN_CHUNK, chunks
from edgeship.delta.listing import segment_digest

Check = Callable[..., PatchStats]


def _random(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def test_chunks_cover_the_input_within_size_bounds() -> None:
    data = _random(3_000_000, 0) + bytes(400_000)  # zeros never cut: forces MAX_CHUNK cuts
    parts = list(chunks(io.BytesIO(data)))
    assert b"".join(parts) == data
    assert all(MIN_CHUNK <= len(p) <= MAX_CHUNK for p in parts[:-1])
    assert any(len(p) == MAX_CHUNK for p in parts)


def test_an_insertion_only_disturbs_nearby_chunks() -> None:
    data = _random(2_000_000, 1)
    edited = data[:500_000] + b"inserted bytes" + data[500_000:]
    before = {segment_digest(p) for p in chunks(io.BytesIO(data))}
    after = [segment_digest(p) for p in chunks(io.BytesIO(edited))]
    assert sum(d not in before for d in after) <= 3


@pytest.mark.parametrize(
    "old_size,new_size", [(0, 0), (0, 5000), (5000, 0), (1, 1), (300_000, 200_000)]
)
def test_unrelated_files_roundtrip(
    old_size: int, new_size: int, tmp_path: Path, check_roundtrip: Check
) -> None:
    old, new = tmp_path / "old.bin", tmp_path / "new.bin"
    old.write_bytes(_random(old_size, 2))
    new.write_bytes(_random(new_size, 3))
    assert check_roundtrip(old, new).encoder == "generic"


def test_edited_binary_costs_about_the_edit(tmp_path: Path, check_roundtrip: Check) -> None:
    data = _random(4_000_000, 4)
    old, new = tmp_path / "old.bin", tmp_path / "new.bin"
    old.write_bytes(data)
    new.write_bytes(
        data[:1_000_000] + _random(10_000, 5) + data[1_000_000:3_000_000] + data[3_100_000:]
    )
    stats = check_roundtrip(old, new)
    assert stats.patch_size < 10_000 + 3 * MAX_CHUNK
    assert stats.bytes_copied > 3_500_000
