"""Fixtures shared by the delta tests: small real model files and a round-trip check."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from edgeship.delta import PatchStats, apply_patch, make_patch


def roundtrip(old: Path, new: Path, workdir: Path, encoder: str = "auto") -> PatchStats:
    """Make a patch old → new, apply it, and assert the result is exactly `new`."""
    patch, out = workdir / "patch.esd", workdir / "rebuilt.bin"
    stats = make_patch(old, new, patch, encoder=encoder)
    digest = apply_patch(old, patch, out)
    expected = new.read_bytes()
    assert out.read_bytes() == expected
    assert digest == "sha256:" + hashlib.sha256(expected).hexdigest()
    assert stats.patch_size == patch.stat().st_size
    assert stats.bytes_copied + stats.bytes_literal == stats.target_size == len(expected)
    return stats


@pytest.fixture
def check_roundtrip(tmp_path: Path):  # type: ignore[no-untyped-def]
    def check(old: Path, new: Path, encoder: str = "auto") -> PatchStats:
        return roundtrip(old, new, tmp_path, encoder)

    return check
