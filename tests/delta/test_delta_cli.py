"""`edgeship delta make|apply|stats` in-process, through the real entry point."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from edgeship.cli.main import run


@pytest.fixture
def made(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path, Path]:
    """old, new and the patch between them, made through the CLI."""
    rnd = random.Random(3)
    base = rnd.randbytes(200_000)
    old, new, patch = tmp_path / "old.bin", tmp_path / "new.bin", tmp_path / "p.esd"
    old.write_bytes(base)
    new.write_bytes(base[:50_000] + b"changed" + base[50_000:])
    assert run(["delta", "make", str(old), str(new), "-o", str(patch)]) == 0
    assert "saved" in capsys.readouterr().out
    return old, new, patch


def test_stats_and_apply(
    made: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new, patch = made
    out = tmp_path / "out.bin"
    assert run(["delta", "stats", str(patch), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["encoder"] == "generic"
    assert stats["bytes_copied"] + stats["bytes_literal"] == new.stat().st_size
    assert stats["patch_size"] == patch.stat().st_size
    expect = stats["target_digest"]
    assert run(["delta", "apply", str(old), str(patch), "-o", str(out), "--expect", expect]) == 0
    assert out.read_bytes() == new.read_bytes()


def test_apply_in_place_replaces_the_old_file(made: tuple[Path, Path, Path]) -> None:
    old, new, patch = made
    assert run(["delta", "apply", str(old), str(patch), "-o", str(old)]) == 0
    assert old.read_bytes() == new.read_bytes()


def test_wrong_source_is_one_red_line_and_exit_1(
    made: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, new, patch = made
    out = tmp_path / "out.bin"
    assert run(["delta", "apply", str(new), str(patch), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "different source" in err and "full blob" in err and "Traceback" not in err
    assert not out.exists()


def test_missing_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["delta", "stats", str(tmp_path / "none.esd")]) == 2
    assert "does not exist" in capsys.readouterr().err
