"""Fixtures for the foundation: tiny real model files and a real operator workspace."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edgeship.cli.main import run
from edgeship.samples.imagemodel import write_tiny_denoiser
from edgeship.samples.llama import write_tiny_llama
from edgeship.samples.tensorfiles import write_safetensors
from edgeship.workspace import Workspace


@dataclass
class CliResult:
    code: int
    out: str
    err: str


Cli = Callable[..., CliResult]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Cli:
    """Run `edgeship ARGS…` in-process; returns exit code and captured output."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "200")

    def invoke(*args: str | Path) -> CliResult:
        capsys.readouterr()
        code = run([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    rng = np.random.default_rng(1)
    return {
        "gguf": write_tiny_llama(d / "tiny.gguf"),
        "onnx": write_tiny_denoiser(d / "denoiser.onnx"),
        "safetensors": write_safetensors(
            d / "adapter.safetensors", {"lora_a": rng.standard_normal((8, 16)).astype(np.float32), "lora_b": np.zeros((16, 8), np.float32)}
        ),
    }


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.delenv("EDGESHIP_KEY_PASSPHRASE", raising=False)
    ws = Workspace.init(tmp_path / "ws", passphrase=None)
    monkeypatch.setenv("EDGESHIP_WORKSPACE", str(ws.root))
    return ws
