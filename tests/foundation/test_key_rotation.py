"""Key rotation: clients that trust the old root follow it, and the retired key is worthless."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeship.trust.targets import release_targets
from edgeship.workspace import Workspace

from .attacks import forged_repository


def push(cli, version: str, model: Path):  # noqa: ANN201
    return cli("release", "push", "llm", "--version", version, "-c", f"model/gguf={model}")


@pytest.mark.parametrize("role", ["root", "targets", "snapshot", "timestamp"])
def test_client_with_old_root_follows_rotation(cli, workspace: Workspace, models, role: str) -> None:
    old_keyid = workspace.repository().root().signed.roles[role].keyids[0]
    assert push(cli, "1.0.0", models["gguf"]).code == 0
    assert cli("verify", "llm@1.0.0", "--repo", workspace.repo_dir).code == 0  # client now trusts root v1

    r = cli("keys", "rotate", "--role", role, "--json")
    assert r.code == 0, r.err
    rotated = json.loads(r.out)
    assert rotated["root_version"] == 2 and rotated["keyid"] != old_keyid
    assert workspace.repository().root().signed.roles[role].keyids == [rotated["keyid"]]
    assert len(list((workspace.root / "keys" / "retired").glob(f"{role}-*.pem"))) == 1

    assert push(cli, "2.0.0", models["gguf"]).code == 0
    r = cli("verify", "llm@2.0.0", "--repo", workspace.repo_dir)
    assert r.code == 0, r.err
    listed = json.loads(cli("keys", "list", "--json").out)
    assert listed["root_version"] == 2


def test_retired_targets_key_is_rejected(cli, workspace: Workspace, models, tmp_path: Path) -> None:
    assert push(cli, "1.0.0", models["gguf"]).code == 0
    assert cli("verify", "llm@1.0.0", "--repo", workspace.repo_dir).code == 0
    assert cli("keys", "rotate", "--role", "targets").code == 0
    retired = next((workspace.root / "keys" / "retired").glob("targets-*.pem"))

    # Whoever kept the old targets key signs a release with it.
    forged = forged_repository(workspace, tmp_path, targets_key=retired)
    manifest = workspace.load_manifest(workspace.find_release("llm")).model_copy(update={"version": "1.0.1"})
    data = manifest.canonical_bytes()
    (workspace.repo_dir / "releases" / "llm" / "1.0.1.json").write_bytes(data)
    forged.add_targets(release_targets(manifest, data))

    r = cli("verify", "llm@1.0.1", "--repo", workspace.repo_dir)
    assert r.code == 4
    assert "not signed by a trusted key" in r.err


def test_unknown_role(cli, workspace: Workspace) -> None:
    r = cli("keys", "rotate", "--role", "admin")
    assert r.code == 2 and "unknown role 'admin'" in r.err


def test_rotated_key_stays_encrypted(cli, tmp_path: Path, monkeypatch, models) -> None:
    monkeypatch.setenv("EDGESHIP_KEY_PASSPHRASE", "s3cret")
    assert cli("init", tmp_path / "ws").code == 0
    monkeypatch.setenv("EDGESHIP_WORKSPACE", str(tmp_path / "ws"))
    assert cli("keys", "rotate", "--role", "targets").code == 0
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "ws" / "keys" / "targets.pem").read_bytes()
    assert push(cli, "1.0.0", models["gguf"]).code == 0
    monkeypatch.delenv("EDGESHIP_KEY_PASSPHRASE")
    r = cli("keys", "rotate", "--role", "targets")
    assert r.code == 2 and "encrypted" in r.err


def test_binned_catalog_follows_targets_rotation(cli, workspace: Workspace, models) -> None:
    """Bins are signed by the targets key: rotating it re-points the delegation and re-signs every bin."""
    workspace.config.bin_at = 1  # the first push moves the catalog into bins
    workspace.save_config()
    assert push(cli, "1.0.0", models["gguf"]).code == 0
    assert cli("verify", "llm@1.0.0", "--repo", workspace.repo_dir).code == 0
    before = workspace.repository().latest_versions()
    assert before["bins-00"] == 1
    assert cli("keys", "rotate", "--role", "targets").code == 0
    repo = workspace.repository()
    new_key = repo.root().signed.roles["targets"].keyids
    assert repo.targets().signed.delegations.succinct_roles.keyids == new_key
    assert all(v == 2 for name, v in repo.latest_versions().items() if name.startswith("bins-"))
    assert push(cli, "2.0.0", models["gguf"]).code == 0
    r = cli("verify", "llm@2.0.0", "--repo", workspace.repo_dir)
    assert r.code == 0, r.err
