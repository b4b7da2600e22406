"""Hypothesis strategies shared by the fuzz tests: JSON values, and mutations of a valid
document (replace a value by one of its kind or any other, drop it, or add one beside it,
anywhere in the tree)."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

# Text with everything JSON can carry, lone surrogates and NUL included; the strings that
# break parsers and databases most often are drawn on purpose too.
EDGE_TEXT = ["", "\x00", "a\x00b", "\ud800", "\udcff", "é", "\U0001d11e", "%00", "../../etc/passwd", "a" * 300, "1e309", "-1"]
TEXT = st.sampled_from(EDGE_TEXT) | st.text(st.characters(codec=None, exclude_categories=()), max_size=20)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _like(value: Any) -> st.SearchStrategy[Any]:
    """Another value of the same JSON kind (a bool stays a bool, an int an int...)."""
    for kind, strategy in ((bool, st.booleans()), (int, st.integers()), (float, st.floats(allow_nan=False, allow_infinity=False)),
                           (str, TEXT), (list, st.lists(JSON, max_size=4)), (dict, st.dictionaries(TEXT, JSON, max_size=4))):
        if isinstance(value, kind):
            return strategy
    return JSON


@st.composite
def mutated(draw: st.DrawFn, valid: Any, max_mutations: int = 3) -> Any:
    """``valid`` with one to ``max_mutations`` values replaced, removed, or added next to them."""
    doc = copy.deepcopy(valid)
    for _ in range(draw(st.integers(1, max_mutations))):
        path = draw(st.sampled_from(_paths(doc)))
        if not path:
            doc = draw(JSON)
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["same kind", "replace", "remove", "add"]))
        if action == "same kind":  # keeps more documents valid, so the checks behind parsing run
            parent[path[-1]] = draw(_like(parent[path[-1]]))
        elif action == "replace":
            parent[path[-1]] = draw(JSON)
        elif action == "remove":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(TEXT)] = draw(JSON)
        else:
            parent.insert(path[-1], draw(JSON))
    return doc


# Values that sit on the edges of the integer fields binary headers are made of.
EDGE_INTS = [0, 1, 7, 8, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53, 2**63 - 1, 2**63, 2**64 - 1]


@st.composite
def mutated_bytes(draw: st.DrawFn, seed: bytes, hot: int, max_mutations: int = 4) -> bytes:
    """``seed`` with a few mutations, most of them in its first ``hot`` bytes (where the
    header a parser reads lives): bit flips, edge integers written over a field, random
    bytes inserted or overwritten, bytes deleted, or the file cut short."""
    buf = bytearray(seed)
    for _ in range(draw(st.integers(1, max_mutations))):
        if not buf:
            break
        end = len(buf) if draw(st.integers(0, 9)) == 0 else min(hot, len(buf))
        pos = draw(st.integers(0, end - 1))
        op = draw(st.sampled_from(["flip", "int", "overwrite", "insert", "delete", "truncate"]))
        if op == "flip":
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "int":
            width = draw(st.sampled_from([1, 2, 4, 8]))
            value = draw(st.sampled_from(EDGE_INTS)) % (1 << (8 * width))
            buf[pos : pos + width] = value.to_bytes(width, "little")
        elif op == "overwrite":
            data = draw(st.binary(min_size=1, max_size=16))
            buf[pos : pos + len(data)] = data
        elif op == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del buf[pos : pos + draw(st.integers(1, 16))]
        else:
            del buf[pos:]
    return bytes(buf)
