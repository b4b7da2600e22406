"""Bad input gets one clear line and a script-friendly exit code, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeship.workspace import Workspace

USAGE, NOT_FOUND, CONFLICT = 2, 3, 5


def push(cli, *args: str | Path):  # noqa: ANN201
    return cli("release", "push", *args)


def assert_clean_failure(r, code: int, *needles: str) -> None:  # noqa: ANN001
    assert r.code == code, (r.code, r.err)
    assert "Traceback" not in r.err
    for n in needles:
        assert n in r.err, r.err


def test_missing_file(cli, workspace: Workspace, tmp_path: Path) -> None:
    r = push(cli, "llm", "--version", "1.0.0", "-c", f"model/gguf={tmp_path / 'nope.gguf'}")
    assert_clean_failure(r, USAGE, "nope.gguf", "does not exist")


def test_wrong_kind(cli, workspace: Workspace, models) -> None:
    r = push(cli, "llm", "--version", "1.0.0", "-c", f"model/gguf={models['onnx']}")
    assert_clean_failure(r, USAGE, "denoiser.onnx", "not a valid GGUF")
    r = push(cli, "llm", "--version", "1.0.0", "-c", f"model/onnx={models['gguf']}")
    assert_clean_failure(r, USAGE, "tiny.gguf", "not a valid ONNX")
    r = push(cli, "llm", "--version", "1.0.0", "-c", f"model/tflite={models['gguf']}")
    assert_clean_failure(r, USAGE, "unknown component kind 'model/tflite'", "model/gguf")


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_gguf(cli, workspace: Workspace, models, tmp_path: Path, keep: float) -> None:
    data = models["gguf"].read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: int(len(data) * keep)])
    r = push(cli, "llm", "--version", "1.0.0", "-c", f"model/gguf={cut}")
    assert_clean_failure(r, USAGE, "cut.gguf", "not a valid GGUF")
    assert list(workspace.store.digests()) == [], "nothing is stored when validation fails"


def test_fake_gguf_and_safetensors(cli, workspace: Workspace, tmp_path: Path) -> None:
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"GGUF" + b"\xff" * 64)
    assert_clean_failure(push(cli, "llm", "--version", "1.0.0", "-c", f"model/gguf={fake}"), USAGE, "fake.gguf")
    st = tmp_path / "fake.safetensors"
    st.write_bytes((10**9).to_bytes(8, "little") + b"{}")
    r = push(cli, "llm", "--version", "1.0.0", "-c", f"model/safetensors={st}")
    assert_clean_failure(r, USAGE, "fake.safetensors", "header length field says 1000000000 bytes, but only 2 follow")


@pytest.mark.parametrize("version", ["1.0", "v1.0.0", "latest", "1.0.0.0"])
def test_invalid_version(cli, workspace: Workspace, models, version: str) -> None:
    r = push(cli, "llm", "--version", version, "-c", f"model/gguf={models['gguf']}")
    assert_clean_failure(r, USAGE, "not a semantic version")


def test_lower_or_equal_version(cli, workspace: Workspace, models) -> None:
    assert push(cli, "llm", "--version", "1.10.0", "-c", f"model/gguf={models['gguf']}").code == 0
    for v in ("1.9.0", "1.10.0", "1.10.0-rc.1"):
        r = push(cli, "llm", "--version", v, "-c", f"model/gguf={models['gguf']}")
        assert_clean_failure(r, CONFLICT, "not newer than the latest 1.10.0")
    assert push(cli, "llm", "--version", "1.10.1", "-c", f"model/gguf={models['gguf']}").code == 0


def test_bad_names_and_requirements(cli, workspace: Workspace, models) -> None:
    r = push(cli, "Bad Name!", "--version", "1.0.0", "-c", f"model/gguf={models['gguf']}")
    assert_clean_failure(r, USAGE, "release name")
    r = push(cli, "llm", "--version", "1.0.0", "-c", f"model/gguf={models['gguf']}", "--requires", "ram=lots")
    assert_clean_failure(r, USAGE, "size 'lots' not understood")
    r = push(cli, "llm", "--version", "1.0.0", "-c", f"model/gguf={models['gguf']}", "--requires", "gpu=yes")
    assert_clean_failure(r, USAGE, "unknown requirement 'gpu'")
    r = push(cli, "llm", "--version", "1.0.0", "-c", f"a:model/gguf={models['gguf']}", "-c", f"a:model/onnx={models['onnx']}")
    assert_clean_failure(r, USAGE, "share the name a")


def test_unknown_release(cli, workspace: Workspace, models) -> None:
    assert_clean_failure(cli("release", "show", "ghost"), NOT_FOUND, "no release named 'ghost'")
    push(cli, "llm", "--version", "1.0.0", "-c", f"model/gguf={models['gguf']}")
    assert_clean_failure(cli("release", "show", "llm@9.9.9"), NOT_FOUND, "has no version 9.9.9", "1.0.0")
    r = cli("verify", "llm@9.9.9", "--repo", workspace.repo_dir)
    assert_clean_failure(r, NOT_FOUND, "llm@9.9.9")


def test_no_workspace(cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("EDGESHIP_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert_clean_failure(cli("release", "list"), 1, "no edgeship workspace", "edgeship init")


def test_verify_needs_a_version_and_a_root(cli, workspace: Workspace, tmp_path: Path, monkeypatch) -> None:
    assert_clean_failure(cli("verify", "llm", "--repo", workspace.repo_dir), USAGE, "exact version")
    monkeypatch.delenv("EDGESHIP_WORKSPACE")
    monkeypatch.chdir(tmp_path)
    r = cli("verify", "llm@1.0.0", "--repo", workspace.repo_dir)
    assert_clean_failure(r, USAGE, "no trusted root", "--root")
