"""Every attack on a release is detected by the device-side verifier, with its own clear error."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from edgeship.release.manifest import Manifest
from edgeship.trust.targets import release_targets
from edgeship.workspace import Workspace

from .attacks import blob_file, forged_repository, writable

TRUST_FAILURE = 4


@pytest.fixture
def pushed(cli, workspace: Workspace, models) -> Workspace:
    r = cli("release", "push", "llm", "--version", "1.0.0", "-c", f"model/gguf={models['gguf']}", "-c", f"model/onnx={models['onnx']}")
    assert r.code == 0, r.err
    return workspace


def verify(cli, ws: Workspace, ref: str = "llm@1.0.0"):  # noqa: ANN201
    return cli("verify", ref, "--repo", ws.repo_dir)


def test_untouched_release_verifies(cli, pushed: Workspace) -> None:
    assert verify(cli, pushed).code == 0


def test_blob_changed_on_disk_after_push(cli, pushed: Workspace) -> None:
    path = blob_file(pushed)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    r = verify(cli, pushed)
    assert r.code == TRUST_FAILURE
    assert "do not match their signed hash" in r.err and "tiny.gguf" in r.err


def test_manifest_edited(cli, pushed: Workspace) -> None:
    path = writable(pushed.repo_dir / "releases" / "llm" / "1.0.0.json")
    # Same length, different bytes: only the hash can tell.
    path.write_bytes(path.read_bytes().replace(b'"created":"20', b'"created":"19'))
    r = verify(cli, pushed)
    assert r.code == TRUST_FAILURE
    assert "release llm@1.0.0" in r.err and "signed hash" in r.err


def test_metadata_signed_with_untrusted_key(cli, pushed: Workspace, models, tmp_path: Path) -> None:
    assert verify(cli, pushed).code == 0
    # A new release signed by a key root never delegated to, published with the real online keys.
    forged = forged_repository(pushed, tmp_path)
    manifest = pushed.load_manifest(pushed.find_release("llm"))
    evil = manifest.model_copy(update={"version": "6.6.6"})
    data = evil.canonical_bytes()
    (pushed.repo_dir / "releases" / "llm" / "6.6.6.json").write_bytes(data)
    forged.add_targets(release_targets(evil, data))
    r = verify(cli, pushed, "llm@6.6.6")
    assert r.code == TRUST_FAILURE
    assert "not signed by a trusted key" in r.err


def test_expired_timestamp_is_a_freeze_attack(cli, pushed: Workspace) -> None:
    pushed.repository().resign_expiring("timestamp", datetime.now(timezone.utc) - timedelta(hours=1))
    r = verify(cli, pushed)
    assert r.code == TRUST_FAILURE
    assert "expired" in r.err and "freeze attack" in r.err


def test_metadata_rolled_back_to_older_version(cli, pushed: Workspace, models, tmp_path: Path) -> None:
    old_metadata = tmp_path / "old-metadata"
    shutil.copytree(pushed.repo_dir / "metadata", old_metadata)
    assert cli("release", "push", "llm", "--version", "2.0.0", "-c", f"model/gguf={models['gguf']}").code == 0
    assert verify(cli, pushed, "llm@2.0.0").code == 0  # the client has now seen the newer metadata
    shutil.rmtree(pushed.repo_dir / "metadata")
    shutil.copytree(old_metadata, pushed.repo_dir / "metadata")
    r = verify(cli, pushed)
    assert r.code == TRUST_FAILURE
    assert "older metadata than this client already trusts" in r.err


def test_release_replaced_by_an_older_one(cli, pushed: Workspace, models) -> None:
    components = ["-c", f"model/gguf={models['gguf']}", "-c", f"model/onnx={models['onnx']}"]
    assert cli("release", "push", "llm", "--version", "2.0.0", *components).code == 0
    v1 = (pushed.repo_dir / "releases" / "llm" / "1.0.0.json").read_bytes()
    writable(pushed.repo_dir / "releases" / "llm" / "2.0.0.json").write_bytes(v1)
    r = verify(cli, pushed, "llm@2.0.0")
    assert r.code == TRUST_FAILURE
    assert "signed hash" in r.err


def test_signed_target_naming_another_release_is_refused(cli, pushed: Workspace) -> None:
    # Even a validly signed targets entry must not pass v1's manifest off as v3.
    v1 = (pushed.repo_dir / "releases" / "llm" / "1.0.0.json").read_bytes()
    v3 = Manifest.from_bytes(v1).model_copy(update={"version": "3.0.0"})
    files = release_targets(v3, v3.canonical_bytes())
    files[0] = type(files[0]).from_data("releases/llm/3.0.0.json", v1, ["sha256"])
    (pushed.repo_dir / "releases" / "llm" / "3.0.0.json").write_bytes(v1)
    pushed.repository().add_targets(files)
    r = verify(cli, pushed, "llm@3.0.0")
    assert r.code == TRUST_FAILURE
    assert "describes llm@1.0.0" in r.err


def test_endless_data_is_cut_at_the_signed_length(cli, pushed: Workspace) -> None:
    path = blob_file(pushed, component_index=1)
    with open(path, "ab") as f:
        f.write(b"\0" * (8 << 20))
    r = verify(cli, pushed)
    assert r.code == TRUST_FAILURE
    assert "more bytes than were signed" in r.err


def test_missing_blob_is_reported_not_crashed(cli, pushed: Workspace) -> None:
    blob_file(pushed).unlink()
    r = verify(cli, pushed)
    assert r.code == 3
    assert "not found" in r.err
