"""The runtime's record of models moved to the CPU: a damaged or hostile file is ignored with one line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edgeship.runtime.fallbacks import FILE, CpuFallbacks

MOVES = {"denoiser": "its accelerator failed check 0"}


def written(data_dir: Path) -> bytes:
    CpuFallbacks(data_dir).put("r1", MOVES, installed=lambda _: True)
    return (data_dir / FILE).read_bytes()


def test_the_moves_survive_a_restart(tmp_path: Path) -> None:
    written(tmp_path)
    assert CpuFallbacks(tmp_path).get("r1") == MOVES and CpuFallbacks(tmp_path).get("r2") == {}


@pytest.mark.parametrize("damage", [
    pytest.param(lambda good: good[: len(good) // 2], id="cut-off-mid-write"),
    pytest.param(lambda good: good[:5] + b"\xff\xfe" + good[7:], id="not-utf8"),
    pytest.param(lambda good: good.replace(b'"its', b'1, "x": "its'), id="a-number-for-a-reason"),
    pytest.param(lambda good: good.replace(b"{", b"[", 1).replace(b"}", b"]", 1), id="a-list-not-a-map"),
    # json.loads raised RecursionError on this, which nothing caught: the runtime did not start.
    pytest.param(lambda good: b"[" * 100_000 + b"]" * 100_000, id="nested-too-deep"),
    pytest.param(lambda good: b"", id="empty"),
])
def test_a_damaged_file_is_ignored_with_one_line_in_our_words(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                              damage) -> None:
    (tmp_path / FILE).write_bytes(damage(written(tmp_path)))
    with caplog.at_level(logging.WARNING, logger="edgeship.runtime.fallbacks"):
        fallbacks = CpuFallbacks(tmp_path)
    assert fallbacks.get("r1") == {}  # every model follows its plan
    [record] = caplog.records
    line = record.getMessage()
    assert line == (f"ignoring {tmp_path / FILE}: not JSON of release -> component -> reason (damaged?): "
                    "every model follows its plan")  # nothing of the JSON parser's own text
    fallbacks.put("r2", MOVES, installed=lambda _: True)  # the next move writes a good file again
    assert CpuFallbacks(tmp_path).get("r2") == MOVES


def test_an_unreadable_file_is_ignored_with_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / FILE).mkdir()
    with caplog.at_level(logging.WARNING, logger="edgeship.runtime.fallbacks"):
        assert CpuFallbacks(tmp_path).get("r1") == {}
    [record] = caplog.records
    assert record.getMessage() == f"ignoring {tmp_path / FILE}, which cannot be read (Is a directory): every model follows its plan"
