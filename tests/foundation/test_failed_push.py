"""A push that fails, however it fails, leaves the workspace exactly as it was: no unsigned
blob, no manifest, no delta, no temp directory, no re-signed metadata."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgeship.workspace import Workspace
from tests.foundation.test_bad_input import CONFLICT, USAGE, assert_clean_failure, push

TRUST, STORE = 4, 1


def tree(root: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and directory (None) under ``root``."""
    out: dict[str, bytes | None] = {}
    for top, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(top, d), root)] = None
        for f in files:
            out[os.path.relpath(os.path.join(top, f), root)] = Path(top, f).read_bytes()
    return out


def assert_unchanged(before: dict[str, bytes | None], root: Path) -> None:
    after = tree(root)
    assert sorted(set(after) - set(before)) == [], "files the failed push left behind"
    assert sorted(set(before) - set(after)) == [], "files the failed push removed"
    assert [k for k in before if before[k] != after[k]] == [], "files the failed push changed"


@pytest.fixture(params=["fresh", "with-a-release"])
def ws(request: pytest.FixtureRequest, cli, workspace: Workspace, models) -> Workspace:  # noqa: ANN001
    """A new workspace, and one that holds llm@1.0.0 (so a push also builds deltas)."""
    if request.param == "with-a-release":
        assert push(cli, "llm", "--version", "1.0.0", "-c", f"model/gguf={models['gguf']}").code == 0
    return workspace


def test_file_name_that_is_not_utf8(cli, ws: Workspace, models, tmp_path: Path) -> None:
    odd = tmp_path / os.fsdecode(b"notes-\xff.txt")
    odd.write_bytes(b"written by a tool that does not speak UTF-8")
    before = tree(ws.root)
    r = push(cli, "llm", "--version", "2.0.0", "-c", f"model/gguf={models['gguf']}", "-c", f"notes:file={odd}")
    assert_clean_failure(r, USAGE, "not valid UTF-8", "rename the file")
    assert_unchanged(before, ws.root)


def test_bad_component_file(cli, ws: Workspace, models, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(models["gguf"].read_bytes()[:1000])
    before = tree(ws.root)
    r = push(cli, "llm", "--version", "2.0.0", "-c", f"notes:file={models['onnx']}", "-c", f"model/gguf={cut}")
    assert_clean_failure(r, USAGE, "cut.gguf", "not a valid GGUF")
    assert_unchanged(before, ws.root)


def test_missing_signing_key(cli, ws: Workspace, models, tmp_path: Path) -> None:
    os.replace(ws.keyring.path("targets"), tmp_path / "targets.pem")  # e.g. kept on another disk
    before = tree(ws.root)
    r = push(cli, "llm", "--version", "2.0.0", "-c", f"model/gguf={models['gguf']}")
    assert_clean_failure(r, TRUST, "targets key is not in")
    assert_unchanged(before, ws.root)


def test_wrong_passphrase(cli, tmp_path: Path, models, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = Workspace.init(tmp_path / "locked", passphrase=b"the right one")
    monkeypatch.setenv("EDGESHIP_WORKSPACE", str(ws.root))
    monkeypatch.setenv("EDGESHIP_KEY_PASSPHRASE", "the right one")
    assert push(cli, "llm", "--version", "1.0.0", "-c", f"model/gguf={models['gguf']}").code == 0
    monkeypatch.setenv("EDGESHIP_KEY_PASSPHRASE", "a wrong one")
    before = tree(ws.root)
    r = push(cli, "llm", "--version", "2.0.0", "-c", f"model/gguf={models['gguf']}", "-c", f"denoiser:model/onnx={models['onnx']}")
    assert_clean_failure(r, TRUST, "wrong passphrase")
    assert_unchanged(before, ws.root)


def test_version_not_newer(cli, workspace: Workspace, models) -> None:
    assert push(cli, "llm", "--version", "1.0.0", "-c", f"model/gguf={models['gguf']}").code == 0
    before = tree(workspace.root)
    r = push(cli, "llm", "--version", "1.0.0", "-c", f"model/gguf={models['gguf']}", "-c", f"denoiser:model/onnx={models['onnx']}")
    assert_clean_failure(r, CONFLICT, "not newer")
    assert_unchanged(before, workspace.root)


def test_failure_after_blobs_and_manifest_are_written(cli, workspace: Workspace, models, tmp_path: Path) -> None:
    """Deltas cannot be written (their directory is a file): by then the blobs and the
    manifest of the new release are stored, and all of it must go."""
    weights = tmp_path / "weights.bin"
    weights.write_bytes(os.urandom(1 << 16))
    assert push(cli, "app", "--version", "1.0.0", "-c", f"weights:file={weights}").code == 0
    (workspace.repo_dir / "deltas").write_bytes(b"in the way")
    weights.write_bytes(weights.read_bytes()[:-16] + os.urandom(16))
    before = tree(workspace.root)
    r = push(cli, "app", "--version", "1.1.0", "-c", f"weights:file={weights}", "-c", f"notes:file={models['onnx']}")
    assert_clean_failure(r, STORE, "cannot write deltas")
    assert_unchanged(before, workspace.root)
    (workspace.repo_dir / "deltas").unlink()
    assert push(cli, "app", "--version", "1.1.0", "-c", f"weights:file={weights}").code == 0
