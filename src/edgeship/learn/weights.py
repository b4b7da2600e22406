"""A GGUF model's trainable tensors as numpy arrays: read them, diff two files, write base + delta.

Only float tensors (F32, F16) are trained and aggregated; a quantized tensor must come back
byte-identical, since averaging quantized blocks is meaningless. Tensors are read through
the one header reader (``formats.gguf``) and memory-mapped, never loaded whole.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edgeship.formats.gguf import TensorInfo, read_header
from edgeship.learn.aggregate import Delta, UpdateRejected

FLOAT_TYPES = {"F32": np.float32, "F16": np.float16}


def _array(mm: np.memmap, t: TensorInfo) -> np.ndarray:
    dtype = np.dtype(FLOAT_TYPES[t.type_name])
    # GGUF lists the fastest-varying dimension first; numpy wants it last.
    return np.ndarray(tuple(reversed(t.shape)), dtype=dtype, buffer=mm, offset=t.offset)


def trainable_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Each float tensor's numpy shape, by name."""
    return {t.name: tuple(reversed(t.shape)) for t in read_header(path).tensors if t.type_name in FLOAT_TYPES}


def tensor_delta(base: Path, tuned: Path) -> Delta:
    """``tuned - base`` per float tensor (float32), or UpdateRejected when the files differ in layout."""
    hb, ht = read_header(base), read_header(tuned)
    layout_b = {t.name: (t.shape, t.type_name) for t in hb.tensors}
    layout_t = {t.name: (t.shape, t.type_name) for t in ht.tensors}
    if layout_b != layout_t:
        wrong = sorted(n for n in layout_b.keys() | layout_t.keys() if layout_b.get(n) != layout_t.get(n))
        raise UpdateRejected(f"the updated model's tensors differ from the base in name, shape or type ({', '.join(wrong[:3])})",
                             hint="train against the round's base model")
    mb = np.memmap(base, mode="r")
    mt = np.memmap(tuned, mode="r")
    by_name = {t.name: t for t in ht.tensors}
    delta: Delta = {}
    for tb in hb.tensors:
        tt = by_name[tb.name]
        if tb.type_name in FLOAT_TYPES:
            delta[tb.name] = _array(mt, tt).astype(np.float32) - _array(mb, tb).astype(np.float32)
        elif mb[tb.offset : tb.offset + tb.n_bytes].tobytes() != mt[tt.offset : tt.offset + tt.n_bytes].tobytes():
            raise UpdateRejected(f"the update changes quantized tensor {tb.name!r} ({tb.type_name})",
                                 hint="only float (F32/F16) tensors are trained and averaged")
    return delta


def write_with_delta(base: Path, delta: Delta, out: Path) -> None:
    """Write a copy of ``base`` whose float tensors are ``base + delta`` (metadata and layout unchanged)."""
    header = read_header(base)
    partial = out.with_name(out.name + ".partial")
    shutil.copyfile(base, partial)
    try:
        mm = np.memmap(partial, mode="r+")
        for t in header.tensors:
            if t.name in delta:
                view = _array(mm, t)
                view[...] = (view.astype(np.float32) + delta[t.name]).astype(view.dtype)
        mm.flush()
        del mm
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
