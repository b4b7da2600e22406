"""Random mutations of real patches: apply raises DeltaError or builds exactly the target."""

from __future__ import annotations

import random
import struct
import zlib
from pathlib import Path

import gguf
import numpy as np
import pytest

from edgeship.delta import apply_patch, make_patch
from edgeship.errors import DeltaError
from edgeship.samples.tensorfiles import write_gguf

MUTATIONS = 300  # per patch and mutator: enough to hit header, frames, bodies and checksums


def _mutate(data: bytes, rnd: random.Random) -> bytes:
    buf = bytearray(data)
    kind = rnd.randrange(5)
    pos = rnd.randrange(len(buf))
    if kind == 0:
        buf[pos] ^= 1 << rnd.randrange(8)
    elif kind == 1:
        buf[pos : pos + 8] = rnd.randbytes(8)
    elif kind == 2:
        del buf[pos:]
    elif kind == 3:
        buf[pos:pos] = rnd.randbytes(rnd.randrange(1, 16))
    else:
        del buf[pos : pos + rnd.randrange(1, 16)]
    return bytes(buf)


def _gguf_pair(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(5)
    weights = {f"t{i}": rng.standard_normal((32, 64)).astype(np.float32) for i in range(6)}
    types = {"t1": gguf.GGMLQuantizationType.F16, "t2": gguf.GGMLQuantizationType.Q8_0}
    meta = {"tokenizer.ggml.tokens": [f"tok{i}" for i in range(500)]}
    old, new = tmp_path / "old.gguf", tmp_path / "new.gguf"
    write_gguf(old, weights, meta, types)
    changed = {
        **weights,
        "t0": weights["t0"] * 1.01,
        "t1": weights["t1"] + 0.01,
        "t9": weights["t3"],
    }
    write_gguf(new, changed, {**meta, "general.name": "v2"}, types)
    return old, new


def _binary_pair(tmp_path: Path) -> tuple[Path, Path]:
    rnd = random.Random(11)
    base = rnd.randbytes(60_000)
    old, new = tmp_path / "old.bin", tmp_path / "new.bin"
    old.write_bytes(base)
    new.write_bytes(base[:20_000] + rnd.randbytes(3000) + base[25_000:])
    return old, new


def _split(patch: bytes) -> tuple[bytes, list[tuple[int, bytes]]]:
    """Header bytes and (kind, body) of every block, following the documented framing."""
    pos = 16 + 2 + 32 + 32 + 8 + 8
    pos += 1 + patch[pos] + 4
    header, blocks = patch[:pos], []
    while pos < len(patch):
        kind, n = struct.unpack_from("<BI", patch, pos)
        blocks.append((kind, patch[pos + 5 : pos + 5 + n]))
        pos += 5 + n + 4
    return header, blocks


def _frame(kind: int, body: bytes) -> bytes:
    framed = struct.pack("<BI", kind, len(body)) + body
    return framed + struct.pack("<I", zlib.crc32(framed))


def _mutate_inside(data: bytes, rnd: random.Random) -> bytes:
    """Mutate one block body and fix its checksum, so the decoder itself sees the damage."""
    header, blocks = _split(data)
    i = rnd.randrange(len(blocks))
    kind, body = blocks[i]
    if body:
        blocks[i] = (kind, _mutate(body, rnd))
    else:
        blocks[i] = (rnd.randrange(5), body)
    return header + b"".join(_frame(k, b) for k, b in blocks)


@pytest.mark.parametrize("mutate", [_mutate, _mutate_inside])
@pytest.mark.parametrize("make_pair", [_gguf_pair, _binary_pair])
def test_mutated_patches_never_yield_a_wrong_file(tmp_path: Path, make_pair, mutate) -> None:  # type: ignore[no-untyped-def]
    old, new = make_pair(tmp_path)
    patch = tmp_path / "p.esd"
    make_patch(old, new, patch)
    original, target = patch.read_bytes(), new.read_bytes()
    assert b"".join(_frame(k, b) for k, b in _split(original)[1]) in original
    rnd = random.Random(1234)
    outcomes = {"refused": 0, "exact": 0}
    for i in range(MUTATIONS):
        mutated = tmp_path / f"m{i}.esd"
        mutated.write_bytes(mutate(original, rnd))
        out = tmp_path / f"out{i}"
        try:
            apply_patch(old, mutated, out)
        except DeltaError:
            assert not out.exists()
            outcomes["refused"] += 1
        else:
            assert out.read_bytes() == target
            outcomes["exact"] += 1
        mutated.unlink()
    assert outcomes["refused"] > MUTATIONS // 2
