"""The README's first command: the walk-through runs end to end and tells the truth."""

from __future__ import annotations

import json
from pathlib import Path


def test_demo_walkthrough(cli, tmp_path: Path) -> None:
    r = cli("demo", "--offline", "--out", tmp_path / "demo", "--json")
    assert r.code == 0, r.err
    s = json.loads(r.out)
    assert s["ok"] is True
    assert s["releases"] == ["assistant@1.0.0", "assistant@1.1.0"] == s["verified"]
    assert s["delta_exact"] is True
    assert 0 < s["delta_bytes"] < s["model_bytes"] / 10, "a two-tensor fine-tune must cost a fraction of the model"
    assert s["tamper_refused"] is True and "signed hash" in s["tamper_error"]


def test_demo_never_touches_a_non_empty_directory(cli, tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    r = cli("demo", "--offline", "--out", tmp_path)
    assert r.code == 2 and "not empty" in r.err
    assert (tmp_path / "precious.txt").read_text() == "keep me"
