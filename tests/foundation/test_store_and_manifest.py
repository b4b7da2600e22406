"""The blob store, digests, manifests and units, tested directly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgeship.errors import StoreError, UsageError, ValidationError
from edgeship.release.manifest import Component, ComponentKind, Manifest, Requirements, canonical_json, parse_ref
from edgeship.store.digest import Digest, hash_file
from edgeship.store.fsutil import free_space, room_shortfall
from edgeship.store.local import LocalBlobStore
from edgeship.units import parse_duration, parse_rate, parse_size

HEX = "a" * 64


def test_store_dedupes_and_is_read_only(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(3 << 20))  # spans several 1 MiB chunks
    d1, size = store.put_file(src)
    d2, _ = store.put_file(src)
    assert d1 == d2 and size == 3 << 20
    assert store.path(d1) == tmp_path / "blobs" / "sha256" / d1.hex
    assert hash_file(store.path(d1))[0] == d1
    assert oct(store.path(d1).stat().st_mode & 0o777) == "0o444"
    assert list(store.digests()) == [d1]
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == [], "no temp files left behind"


def test_store_rejects_content_that_does_not_match(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    with pytest.raises(StoreError, match="expected sha256:"):
        store.put_stream([b"hello"], expected=Digest(HEX))
    assert list(store.digests()) == []
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []


def test_store_verify_detects_corruption(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    digest, _ = store.put_bytes(b"weights" * 1000)
    assert store.verify(digest)
    os.chmod(store.path(digest), 0o644)
    store.path(digest).write_bytes(b"weightz" * 1000)
    assert not store.verify(digest)
    assert not store.verify(Digest(HEX))


def _manifest(**over) -> Manifest:  # noqa: ANN003
    c = Component(name="m", kind=ComponentKind.GGUF, path="m.gguf", digest=f"sha256:{HEX}", size=1, media_type="x")
    return Manifest(**{"name": "llm", "version": "1.0.0", "components": (c,), "created": "2026-01-01T00:00:00Z", **over})


def test_release_id_is_hash_of_canonical_bytes_and_stable() -> None:
    m = _manifest()
    again = Manifest.from_bytes(m.canonical_bytes())
    assert again == m and again.release_id == m.release_id
    assert _manifest(notes="x").release_id != m.release_id
    assert canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'.encode()


@pytest.mark.parametrize(
    "path", ["../evil", "dir/file", ".hidden", "..", ""],
)
def test_component_paths_cannot_escape_the_release_dir(path: str) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        Component(name="m", kind=ComponentKind.FILE, path=path, digest=f"sha256:{HEX}", size=1, media_type="x")


def test_manifest_rejects_bad_fields() -> None:
    with pytest.raises(ValidationError, match="not a semantic version"):
        Manifest.from_bytes(_manifest().canonical_bytes().replace(b'"1.0.0"', b'"1.0"'))
    with pytest.raises(ValidationError, match="digest"):
        Manifest.from_bytes(_manifest().canonical_bytes().replace(f"sha256:{HEX}".encode(), b"md5:abc"))
    with pytest.raises(ValueError, match="at least one component"):
        _manifest(components=())


def test_requirements_explain_what_is_missing() -> None:
    req = Requirements(min_ram=2 << 30, arch=("aarch64",), accelerator=("cuda",))
    assert req.unmet_by(4 << 30, "aarch64", "cuda") == []
    reasons = req.unmet_by(1 << 30, "x86_64", None)
    assert len(reasons) == 3 and "RAM" in reasons[0] and "x86_64" in reasons[1]


def test_units() -> None:
    assert parse_size("2GiB") == 2 << 30 and parse_size("512MB") == 512_000_000 and parse_size("10") == 10
    assert parse_duration("1h30m") == 5400 and parse_duration("7d") == 7 * 86400 and parse_duration("45") == 45
    assert parse_rate("2MB/s") == 2_000_000
    for bad in ("2 parsecs", "", "GiB"):
        with pytest.raises(UsageError):
            parse_size(bad)
    with pytest.raises(UsageError):
        parse_duration("soon")


def test_parse_ref() -> None:
    assert parse_ref("llm") == ("llm", None)
    assert parse_ref("llm@1.2.3-rc.1") == ("llm", "1.2.3-rc.1")
    with pytest.raises(UsageError):
        parse_ref("llm@one")


def test_room_shortfall_is_the_one_free_space_rule() -> None:
    """The download's and the trainer's rule: free space must hold the need plus the margin."""
    mib = 2**20
    assert room_shortfall(3 * mib, 4 * mib, keep_free=1 * mib) is None
    assert room_shortfall(0, 0, keep_free=1 * mib) is None  # nothing to write: nothing to refuse
    assert room_shortfall(3 * mib, 4 * mib - 1, keep_free=1 * mib) == "needs 3.0 MiB and 1.0 MiB must stay free, but 4.0 MiB is free"
    assert room_shortfall(3 * mib, 2 * mib) == "needs 3.0 MiB, but 2.0 MiB is free"
    assert free_space(Path(".")) > 0
