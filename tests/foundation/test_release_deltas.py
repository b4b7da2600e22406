"""Deltas signed at push time: only what changed travels, and only when it is worth it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edgeship.delta import apply_patch
from edgeship.demo.walkthrough import fine_tune
from edgeship.release.deltas import predecessors
from edgeship.release.manifest import Component, ComponentKind, Manifest
from edgeship.samples.llama import TinyLlama, write_tiny_llama
from edgeship.store.digest import hash_file
from edgeship.workspace import Workspace

SPEC = TinyLlama(n_embd=128, n_layer=4, n_ff=256)


@pytest.fixture(scope="module")
def llms(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("llms")
    return write_tiny_llama(d / "v1.gguf", SPEC), write_tiny_llama(d / "v2.gguf", SPEC, weights=fine_tune(SPEC))


def test_push_signs_a_delta_that_rebuilds_the_new_model(cli, workspace: Workspace, llms, tmp_path: Path) -> None:
    v1, v2 = llms
    assert cli("release", "push", "llm", "--version", "1.0.0", "-c", f"model:model/gguf={v1}").code == 0
    r = cli("release", "push", "llm", "--version", "1.1.0", "-c", f"model:model/gguf={v2}", "--json")
    assert r.code == 0, r.err
    [delta] = json.loads(r.out)["deltas"]
    assert delta["kept"] and delta["from_version"] == "1.0.0" and delta["encoder"] == "gguf"
    assert delta["size"] < delta["full_size"] / 10

    shown = json.loads(cli("release", "show", "llm@1.1.0", "--json").out)
    [row] = shown["deltas"]
    assert row["component"] == "model" and row["saving"] > 0.9
    # The patch is a signed target: verify fetches it like any other and it rebuilds v2 exactly.
    signed = workspace.repository().targets().signed.targets[row["path"]]
    patch = workspace.repo_dir / row["path"]
    assert signed.length == patch.stat().st_size and signed.hashes["sha256"] == hash_file(patch)[0].hex
    old_blob = workspace.store.path(hash_file(v1)[0])
    assert apply_patch(old_blob, patch, tmp_path / "rebuilt.gguf") == str(hash_file(v2)[0])
    assert (tmp_path / "rebuilt.gguf").read_bytes() == v2.read_bytes()


def test_deltas_can_be_switched_off(cli, workspace: Workspace, llms) -> None:
    v1, v2 = llms
    cli("release", "push", "llm", "--version", "1.0.0", "-c", f"model/gguf={v1}")
    r = cli("release", "push", "llm", "--version", "1.1.0", "-c", f"model/gguf={v2}", "--deltas", "0", "--json")
    assert json.loads(r.out)["deltas"] == []
    assert not (workspace.repo_dir / "deltas").exists()


def test_a_delta_that_saves_nothing_is_not_signed(cli, workspace: Workspace, tmp_path: Path) -> None:
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(os.urandom(256 << 10))
    b.write_bytes(os.urandom(256 << 10))
    cli("release", "push", "blob", "--version", "1.0.0", "-c", f"file={a}")
    r = cli("release", "push", "blob", "--version", "2.0.0", "-c", f"file={b}", "--json")
    [delta] = json.loads(r.out)["deltas"]
    assert delta["kept"] is False
    assert json.loads(cli("release", "show", "blob@2.0.0", "--json").out)["deltas"] == []
    assert [p for p in (workspace.repo_dir / "deltas").rglob("*") if p.is_file()] == [], "no patch file left behind"


def _component(name: str, kind: ComponentKind, n: int) -> Component:
    return Component(name=name, kind=kind, path=f"{name}.bin", digest=f"sha256:{n:064x}", size=1, media_type="x")


def _manifest(*components: Component) -> Manifest:
    return Manifest(name="m", version="1.0.0", components=components, created="2026-01-01T00:00:00Z")


def test_predecessors_by_name_then_by_unique_kind() -> None:
    gguf, onnx, cfg = ComponentKind.GGUF, ComponentKind.ONNX, ComponentKind.CONFIG
    old = _manifest(_component("llm-a", gguf, 1), _component("vision", onnx, 2), _component("c1", cfg, 3), _component("c2", cfg, 4))
    new = _manifest(_component("llm-b", gguf, 5), _component("vision", onnx, 6), _component("c3", cfg, 7), _component("c4", cfg, 8))
    before = predecessors(new, old)
    assert before["vision"].name == "vision"  # same name
    assert before["llm-b"].name == "llm-a"  # renamed, but the only GGUF on both sides
    assert "c3" not in before and "c4" not in before  # two configs each: no guessing

