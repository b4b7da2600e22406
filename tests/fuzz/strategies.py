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
