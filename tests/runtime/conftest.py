"""Real tiny models, installed as releases in a real device store, served by a real uvicorn."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edgeship.agent.store import CURRENT, DeviceStore
from edgeship.release.inspect import inspect_component
from edgeship.release.manifest import MEDIA_TYPES, Component, ComponentKind, HealthSuite, Manifest
from edgeship.runtime import BackgroundServer, RuntimeConfig
from edgeship.samples.imagemodel import write_tiny_denoiser
from edgeship.samples.llama import TinyLlama, write_tiny_llama
from edgeship.store.digest import hash_file

IMAGE_META = {"input": "image", "output": "denoised", "layout": "NCHW", "size": [32, 32]}


@dataclass(frozen=True)
class Models:
    llama_a: Path
    llama_b: Path
    denoiser: Path
    photo: Path  # 48x40 RGB PNG: the runtime resizes it to the model's 32x32 and back


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    d = tmp_path_factory.mktemp("runtime-models")
    rng = np.random.default_rng(7)
    photo = d / "photo.png"
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8), "RGB").save(photo)
    return Models(
        llama_a=write_tiny_llama(d / "a.gguf", TinyLlama(seed=1)),
        llama_b=write_tiny_llama(d / "b.gguf", TinyLlama(seed=2)),
        denoiser=write_tiny_denoiser(d / "denoiser.onnx"),
        photo=photo,
    )


def png_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array.astype(np.uint8), "RGB").save(out, "PNG")
    return out.getvalue()


@dataclass
class Device:
    """A device data dir with a store the tests install releases into, as the agent would."""

    root: Path

    @property
    def store(self) -> DeviceStore:
        return DeviceStore(self.root)

    def install(self, version: str, files: dict[str, tuple[ComponentKind, Path]], *,
                meta: dict[str, dict[str, Any]] | None = None, health: HealthSuite | None = None,
                make_current: bool = True, inspect: bool = True) -> str:
        """Install a release; ``inspect=False`` lets a broken model through, as only a device finds out."""
        components = []
        for name, (kind, path) in files.items():
            digest, size = hash_file(path)
            info = inspect_component(kind, path) if kind.is_model and inspect else {}
            components.append(Component(name=name, kind=kind, path=path.name, digest=str(digest), size=size,
                                        media_type=MEDIA_TYPES[kind], meta={**info, **(meta or {}).get(name, {})}))
            self.store.blobs.put_file(path)
        manifest = Manifest(name="assistant", version=version, components=tuple(components),
                            health=health or HealthSuite(), created=Manifest.now())
        store = self.store
        store.save_manifest(manifest.release_id, manifest.canonical_bytes())
        store.stage(manifest.release_id)
        if make_current:
            store.switch(manifest.release_id, store.link(CURRENT))
        return manifest.release_id


@pytest.fixture
def device(tmp_path: Path) -> Device:
    return Device(tmp_path / "device")


def standard_release(device: Device, models: Models, version: str = "1.0.0", *, llama: Path | None = None,
                     health: HealthSuite | None = None, make_current: bool = True) -> str:
    """An LLM and an image model with image pre/post-processing declared in its meta."""
    return device.install(version, {"llm": (ComponentKind.GGUF, llama or models.llama_a),
                                    "denoiser": (ComponentKind.ONNX, models.denoiser)},
                          meta={"denoiser": {"image": IMAGE_META}}, health=health, make_current=make_current)


def config_for(device: Device, **overrides: Any) -> RuntimeConfig:
    # One llama.cpp thread: the suite shares two cores with everything else on the machine.
    return RuntimeConfig(data_dir=device.root, threads=1, n_ctx=256, **overrides)


@pytest.fixture
def served(device: Device, models: Models) -> Iterator[tuple[BackgroundServer, str]]:
    """A runtime serving the standard release: (server, release ID)."""
    release_id = standard_release(device, models)
    with BackgroundServer(config_for(device)) as server:
        yield server, release_id
