"""Fixtures for the agent: a real operator workspace, real releases, a real HTTP repository."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgeship.agent.store import DeviceStore
from edgeship.release.manifest import Manifest
from edgeship.samples.llama import write_tiny_llama
from edgeship.workspace import Workspace
from tests.agent.harness import Releases, Server


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("models") / "model.gguf")


@pytest.fixture
def releases(tmp_path: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> Releases:
    monkeypatch.delenv("EDGESHIP_KEY_PASSPHRASE", raising=False)
    ws = Workspace.init(tmp_path / "ws", passphrase=None)
    return Releases(ws, tiny_gguf, tmp_path / "src")


@pytest.fixture
def start_server(releases: Releases, tmp_path: Path) -> Iterator[Callable[[], Server]]:
    """Starts a real server over ``releases``' workspace when called: after the test has
    published what the server copies at creation. Stopped when the test ends."""
    started: list[Server] = []

    def start() -> Server:
        server = Server.create(releases.ws, tmp_path / "server")
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


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
