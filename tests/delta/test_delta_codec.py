"""Byte planes, zigzag differences and DATA pieces decode to exactly what was coded."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeship.delta.codec import (
    code_piece,
    code_with_prefix,
    decode_piece,
    from_nibbles,
    from_planes,
    to_nibbles,
    to_planes,
    zigzag_add,
    zigzag_sub,
)
from edgeship.delta.format import Data, Transform


def _as_block(coded, length: int, ref_length: int = 0) -> Data:  # type: ignore[no-untyped-def]
    return Data(coded.transform, coded.width, 0, ref_length, length, coded.payload)


@given(st.sampled_from([1, 2, 4, 8, 18, 34]), st.integers(0, 64), st.randoms())
def test_planes_invert(width: int, n: int, rnd) -> None:  # type: ignore[no-untyped-def]
    data = rnd.randbytes(width * n)
    planed = to_planes(data, width)
    assert from_planes(planed, width) == data
    if width > 1 and n > 1:
        assert planed[:n] == data[::width]


@given(st.binary(max_size=99))
def test_nibbles_invert(data: bytes) -> None:
    packed = to_nibbles(data)
    assert len(packed) == len(data) + len(data) % 2
    assert from_nibbles(packed, len(data)) == data


@given(st.sampled_from([1, 2, 4, 8]), st.integers(0, 64), st.randoms())
def test_zigzag_difference_inverts(width: int, n: int, rnd) -> None:  # type: ignore[no-untyped-def]
    old, new = rnd.randbytes(width * n), rnd.randbytes(width * n)
    assert zigzag_add(old, zigzag_sub(new, old, width), width) == new


def test_small_differences_become_small_numbers() -> None:
    old = np.array([1000, -5, 7], np.int16)
    new = np.array([1001, -6, 7], np.int16)
    coded = np.frombuffer(zigzag_sub(new.tobytes(), old.tobytes(), 2), np.uint16)
    assert coded.tolist() == [2, 1, 0]


@settings(max_examples=50, deadline=None)
@given(st.sampled_from([1, 2, 4, 34]), st.integers(1, 300), st.booleans(), st.randoms())
def test_pieces_decode_exactly(width: int, n: int, with_base: bool, rnd) -> None:  # type: ignore[no-untyped-def]
    new = rnd.randbytes(width * n)
    base = rnd.randbytes(width * n) if with_base else None
    coded = code_piece(new, width, base)
    ref = base if coded.transform is Transform.SUB else b""
    assert decode_piece(_as_block(coded, len(new), len(ref or b"")), ref or b"") == new


@pytest.mark.parametrize(
    "scale,transform",
    [(1e-3, Transform.SUB_NIBBLES), (3e-2, Transform.SUB)],
)
def test_nudged_floats_are_coded_as_a_difference(scale: float, transform: Transform) -> None:
    rng = np.random.default_rng(1)
    old = rng.standard_normal(50_001).astype(np.float16)
    new = (old.astype(np.float32) * (1 + rng.standard_normal(old.size) * scale)).astype(np.float16)
    coded = code_piece(new.tobytes(), 2, old.tobytes())
    assert coded.transform is transform
    # A one-ulp nudge costs ~0.17 of the tensor: under bsdiff's ~0.20 on the same data.
    assert len(coded.payload) < (0.18 if transform is Transform.SUB_NIBBLES else 0.6) * new.nbytes
    block = Data(transform, 2, 0, new.nbytes, new.nbytes, coded.payload)
    assert decode_piece(block, old.tobytes()) == new.tobytes()


def test_prefix_coding_costs_only_the_change_even_for_a_large_header() -> None:
    # A vocabulary plus random float scores, ~14 MiB: beyond zstd's default windows.
    tokens = b"".join(b"\xe2\x96\x81tok%07d" % i for i in range(1_000_000))
    ref = tokens + random.Random(0).randbytes(4 * 1024 * 1024)
    new = ref[:100] + b"edgeship" + ref[108:-100] + b"chat template" + ref[-100:]
    coded = code_with_prefix(new, ref)
    assert len(coded.payload) < 16 * 1024  # kilobytes, not a re-sent 14 MiB header
    block = Data(Transform.PREFIX, 1, 0, len(ref), len(new), coded.payload)
    assert decode_piece(block, ref) == new
