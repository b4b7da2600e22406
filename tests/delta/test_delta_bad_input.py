"""Bad patches and wrong sources are refused, and never leave a wrong output file."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from edgeship.delta import apply_patch, make_patch, read_stats
from edgeship.delta.format import Copies, Copy, Data, End, Header, Transform, encode_block
from edgeship.errors import DeltaError, UsageError


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, Path]:
    rnd = random.Random(7)
    base = rnd.randbytes(300_000)
    old, new, patch = tmp_path / "old.bin", tmp_path / "new.bin", tmp_path / "p.esd"
    old.write_bytes(base)
    new.write_bytes(base[:100_000] + rnd.randbytes(20_000) + base[100_000:])
    make_patch(old, new, patch)
    return old, new, patch


def craft(
    old: Path, target: bytes, blocks: list[Copies | Data], path: Path, size: int | None = None
) -> Path:
    """A well-formed patch (valid checksums) with whatever ops a test wants."""
    header = Header(
        hashlib.sha256(old.read_bytes()).digest(),
        hashlib.sha256(target).digest(),
        old.stat().st_size,
        len(target) if size is None else size,
        "generic",
    )
    path.write_bytes(header.encode() + b"".join(encode_block(b) for b in [*blocks, End(b"")]))
    return path


def refused(old: Path, patch: Path, out: Path, match: str, **kw: str) -> None:
    with pytest.raises(DeltaError, match=match) as info:
        apply_patch(old, patch, out, **kw)
    assert info.value.hint == "download the full blob instead"
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")] == []


def test_patch_for_another_source(files: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, new, patch = files
    refused(new, patch, tmp_path / "out", "different source")


@pytest.mark.parametrize("cut", [0, 10, 60, 200, -50, -1])
def test_truncated_patch(files: tuple[Path, Path, Path], tmp_path: Path, cut: int) -> None:
    old, _, patch = files
    short = tmp_path / "short.esd"
    short.write_bytes(patch.read_bytes()[:cut])
    refused(old, short, tmp_path / "out", "corrupt|not an edgeship")


def test_flipped_byte_in_data(files: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old, _, patch = files
    data = bytearray(patch.read_bytes())
    data[len(data) // 2] ^= 0x40
    bad = tmp_path / "bad.esd"
    bad.write_bytes(bytes(data))
    refused(old, bad, tmp_path / "out", "checksum")


def test_copy_outside_the_source(files: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old = files[0]
    size = old.stat().st_size
    patch = craft(old, bytes(100), [Copies((Copy(size - 50, 100),))], tmp_path / "x.esd")
    refused(old, patch, tmp_path / "out", "beyond")


def test_reference_outside_the_source(files: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old = files[0]
    block = Data(Transform.PREFIX, 1, old.stat().st_size, 10, 0, b"")
    refused(old, craft(old, b"", [block], tmp_path / "x.esd"), tmp_path / "out", "beyond")


def test_ops_write_more_than_declared(files: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old = files[0]
    target = old.read_bytes()[:1000]
    patch = craft(
        old, target, [Copies((Copy(0, 1000),)), Copies((Copy(0, 1000),))], tmp_path / "x.esd"
    )
    refused(old, patch, tmp_path / "out", "more than the declared")


def test_ops_write_less_than_declared(files: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old = files[0]
    patch = craft(
        old, old.read_bytes()[:1000], [Copies((Copy(0, 500),))], tmp_path / "x.esd", size=1000
    )
    refused(old, patch, tmp_path / "out", "the header declares")


def test_valid_ops_building_the_wrong_bytes(files: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old = files[0]
    patch = craft(old, b"something else", [Copies((Copy(0, 14),))], tmp_path / "x.esd")
    refused(old, patch, tmp_path / "out", "target digest")


def test_expected_digest_mismatch_and_malformed(
    files: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    old, _, patch = files
    refused(old, patch, tmp_path / "out", "was expected", expected_digest="sha256:" + "0" * 64)
    with pytest.raises(UsageError, match="sha256:<64 hex>"):
        apply_patch(old, patch, tmp_path / "out", expected_digest="md5:abc")


def test_failure_leaves_an_existing_output_untouched(
    files: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, new, patch = files
    out = tmp_path / "out"
    out.write_bytes(b"previous release")
    with pytest.raises(DeltaError):
        apply_patch(new, patch, out)
    assert out.read_bytes() == b"previous release"


def test_not_a_patch(files: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old, new, _ = files
    refused(old, new, tmp_path / "out", "bad magic")
    with pytest.raises(DeltaError, match="bad magic"):
        read_stats(new)


def test_missing_inputs_are_usage_errors(files: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old, _, patch = files
    with pytest.raises(UsageError, match="does not exist"):
        apply_patch(tmp_path / "nope", patch, tmp_path / "out")
    with pytest.raises(UsageError, match="does not exist"):
        make_patch(old, tmp_path / "nope", tmp_path / "p")
    with pytest.raises(UsageError, match="unknown encoder"):
        make_patch(old, old, tmp_path / "p", encoder="lzma")
