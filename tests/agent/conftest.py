"""Fixtures for the agent: a real operator workspace, real releases, a real HTTP repository."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeship.agent.store import DeviceStore
from edgeship.release.bundle import ComponentSpec, build_release
from edgeship.release.manifest import MEDIA_TYPES, Component, ComponentKind, HealthSuite, Manifest
from edgeship.samples.llama import TinyLlama, write_tiny_llama
from edgeship.workspace import Workspace


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("models") / "model.gguf")


@dataclass
class Releases:
    """Publishes releases of one name into a real workspace, as an operator would."""

    ws: Workspace
    model: Path
    src: Path
    name: str = "llm"

    def publish(self, version: str, *, health: HealthSuite | None = None, model: Path | None = None,
                broken_model: bool = False, big: Path | None = None) -> Manifest:
        """A release of the tiny GGUF model (shared between versions) and a per-version config.

        ``broken_model`` ships garbage labelled as GGUF, which only a device trial catches.
        """
        d = self.src / version
        d.mkdir(parents=True, exist_ok=True)
        config = d / "config.json"
        config.write_text(json.dumps({"version": version}))
        specs = [ComponentSpec(ComponentKind.GGUF, model or self.model, "model"), ComponentSpec(ComponentKind.CONFIG, config, "config")]
        if big is not None:
            specs.append(ComponentSpec(ComponentKind.FILE, big, "weights"))
        manifest = build_release(self.name, version, specs, self.ws.store, health=health)
        if broken_model:
            bad = d / "model.gguf"
            bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 64)
            digest, size = self.ws.store.put_file(bad)
            model_c = Component(name="model", kind=ComponentKind.GGUF, path="model.gguf", digest=str(digest), size=size,
                                media_type=MEDIA_TYPES[ComponentKind.GGUF])
            manifest = manifest.model_copy(update={"components": (model_c, *manifest.components[1:])})
        self.ws.publish(manifest)
        return manifest

    def root(self) -> Path:
        return self.ws.repo_dir / "metadata" / "1.root.json"


@pytest.fixture
def releases(tmp_path: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> Releases:
    monkeypatch.delenv("EDGESHIP_KEY_PASSPHRASE", raising=False)
    ws = Workspace.init(tmp_path / "ws", passphrase=None)
    return Releases(ws, tiny_gguf, tmp_path / "src")


def install_locally(store: DeviceStore, ws: Workspace, manifest: Manifest) -> str:
    """Put a release's blobs and manifest into a device store straight from the workspace (no network)."""
    from edgeship.store.digest import Digest

    for c in manifest.components:
        src = ws.store.path(Digest(c.hexdigest))
        store.blobs.put_file(src)
    store.save_manifest(manifest.release_id, manifest.canonical_bytes())
    store.stage(manifest.release_id)
    return manifest.release_id


@pytest.fixture
def device_store(tmp_path: Path) -> Iterator[DeviceStore]:
    yield DeviceStore(tmp_path / "device")
