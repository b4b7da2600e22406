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

from edgeship.release.manifest import ComponentKind, HealthSuite
from edgeship.runtime import BackgroundServer, RuntimeConfig
from edgeship.samples.imagemodel import write_tiny_denoiser
from edgeship.samples.llama import TinyLlama, write_tiny_llama

from .harness import Device

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
