"""push → list → show → verify on real GGUF, ONNX and safetensors files with real signatures."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from edgeship import __version__
from edgeship.release.manifest import Manifest
from edgeship.store.digest import hash_file
from edgeship.workspace import Workspace


def test_version_and_help_list_every_group(cli) -> None:
    r = cli("--version")
    assert r.code == 0 and __version__ in r.out
    r = cli("--help")
    assert r.code == 0
    for group in ("init", "release", "verify", "keys", "delta"):
        assert group in r.out


def test_init_creates_private_keys_and_signed_metadata(cli, tmp_path: Path) -> None:
    r = cli("init", tmp_path / "ws", "--json")
    assert r.code == 0, r.err
    info = json.loads(r.out)
    assert set(info["keys"]) == {"root", "targets", "snapshot", "timestamp"}
    for role in info["keys"]:
        mode = stat.S_IMODE(os.stat(tmp_path / "ws" / "keys" / f"{role}.pem").st_mode)
        assert mode == 0o600, f"{role} key is readable by others: {oct(mode)}"
    meta = tmp_path / "ws" / "repository" / "metadata"
    assert {"1.root.json", "1.targets.json", "1.snapshot.json", "timestamp.json"} <= {p.name for p in meta.iterdir()}


def test_init_refuses_existing_workspace(cli, tmp_path: Path) -> None:
    assert cli("init", tmp_path / "ws").code == 0
    before = (tmp_path / "ws" / "keys" / "root.pem").read_bytes()
    r = cli("init", tmp_path / "ws")
    assert r.code == 5
    assert "already an edgeship workspace" in r.err
    assert (tmp_path / "ws" / "keys" / "root.pem").read_bytes() == before


def test_encrypted_keys_need_the_passphrase(cli, tmp_path: Path, monkeypatch, models) -> None:
    monkeypatch.setenv("EDGESHIP_KEY_PASSPHRASE", "correct horse")
    assert cli("init", tmp_path / "ws").code == 0
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "ws" / "keys" / "targets.pem").read_bytes()
    monkeypatch.setenv("EDGESHIP_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("EDGESHIP_KEY_PASSPHRASE", "wrong")
    r = cli("release", "push", "llm", "--version", "1.0.0", "-c", f"model/gguf={models['gguf']}")
    assert r.code == 4 and "wrong passphrase" in r.err
    monkeypatch.setenv("EDGESHIP_KEY_PASSPHRASE", "correct horse")
    assert cli("release", "push", "llm", "--version", "1.0.0", "-c", f"model/gguf={models['gguf']}").code == 0


def test_push_list_show_verify_roundtrip(cli, workspace: Workspace, models) -> None:
    r = cli(
        "release", "push", "robot-brain", "--version", "1.2.0",
        "-c", f"model/gguf={models['gguf']}",
        "-c", f"vision:model/onnx={models['onnx']}",
        "-c", f"model/safetensors={models['safetensors']}",
        "--requires", "ram=2GiB,arch=aarch64|x86_64", "--notes", "first light", "--json",
    )  # fmt: skip
    assert r.code == 0, r.err
    pushed = json.loads(r.out)

    listed = json.loads(cli("release", "list", "--json").out)
    assert [(x["name"], x["version"], x["release_id"]) for x in listed] == [("robot-brain", "1.2.0", pushed["release_id"])]
    assert listed[0]["components"] == 3

    shown = json.loads(cli("release", "show", "robot-brain@1.2.0", "--check", "--json").out)
    assert shown["release_id"] == pushed["release_id"]
    assert shown["requirements"] == {"min_ram": 2 * 1024**3, "arch": ["aarch64", "x86_64"], "accelerator": []}
    by_name = {c["name"]: c for c in shown["components"]}
    assert set(by_name) == {"tiny.gguf", "vision", "adapter.safetensors"}
    for name, path in (("tiny.gguf", models["gguf"]), ("vision", models["onnx"]), ("adapter.safetensors", models["safetensors"])):
        digest, size = hash_file(path)
        assert by_name[name]["digest"] == str(digest) and by_name[name]["size"] == size
        assert by_name[name]["stored"] == "ok"
    assert by_name["tiny.gguf"]["meta"]["architecture"] == "llama"
    assert by_name["vision"]["meta"]["inputs"][0]["name"] == "image"
    assert by_name["adapter.safetensors"]["meta"]["tensors"] == 2
    assert all(s.startswith("valid until") for s in shown["signatures"].values())

    # The release ID is the hash of the canonical manifest bytes stored in the repository.
    manifest_bytes = (workspace.repo_dir / "releases" / "robot-brain" / "1.2.0.json").read_bytes()
    assert Manifest.from_bytes(manifest_bytes).release_id == pushed["release_id"]

    r = cli("verify", "robot-brain@1.2.0", "--repo", workspace.repo_dir, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["release_id"] == pushed["release_id"]


def test_verify_keeps_verified_files(cli, workspace: Workspace, models, tmp_path: Path) -> None:
    cli("release", "push", "llm", "--version", "1.0.0", "-c", f"model/gguf={models['gguf']}")
    r = cli("verify", "llm@1.0.0", "--repo", workspace.root, "--keep", tmp_path / "out")
    assert r.code == 0, r.err
    assert (tmp_path / "out" / "components" / "tiny.gguf").read_bytes() == models["gguf"].read_bytes()


def test_same_blob_is_stored_once(cli, workspace: Workspace, models) -> None:
    for v in ("1.0.0", "1.1.0"):
        assert cli("release", "push", "llm", "--version", v, "-c", f"model/gguf={models['gguf']}").code == 0
    assert len(list(workspace.store.digests())) == 1
    assert [r.version for r in workspace.releases("llm")] == ["1.0.0", "1.1.0"]
    # show without a version picks the newest
    assert json.loads(cli("release", "show", "llm", "--json").out)["version"] == "1.1.0"


def test_push_signs_a_chat_template_into_the_gguf_component(cli, workspace: Workspace, models, tmp_path: Path) -> None:
    template = tmp_path / "chat.jinja"
    template.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    r = cli("release", "push", "llm", "--version", "1.0.0", "-c", f"model/gguf={models['gguf']}",
            "-c", f"vision:model/onnx={models['onnx']}", "--chat-template", template)
    assert r.code == 0, r.err
    shown = json.loads(cli("release", "show", "llm@1.0.0", "--json").out)
    meta = {c["name"]: c["meta"] for c in shown["components"]}
    assert meta["tiny.gguf"]["chat_template"] == template.read_text() and "chat_template" not in meta["vision"]

    (tmp_path / "empty.jinja").write_text(" \n")
    for arg, problem in ((f"vision={template}", "no GGUF component named 'vision'"),
                         (str(tmp_path / "missing.jinja"), "cannot read chat template"),
                         (str(tmp_path / "empty.jinja"), "is empty")):
        r = cli("release", "push", "llm", "--version", "1.0.1", "-c", f"model/gguf={models['gguf']}",
                "-c", f"vision:model/onnx={models['onnx']}", "--chat-template", arg)
        assert r.code == 2 and problem in r.err, r.err
