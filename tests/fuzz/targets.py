"""Every parser fuzz target as one function of bytes, for the hypothesis tests (short, in CI)
and for ``benchmarks/fuzz.py`` (long, coverage-guided with atheris).

A target writes the bytes where its entry point reads them and calls it. It returns
normally when the input was accepted or refused properly (an EdgeshipError with a message);
anything else it raises is a crash: a library's exception, a wrong rebuilt file.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgeship.delta import apply_patch, make_patch
from edgeship.errors import EdgeshipError
from edgeship.formats.facts import read_facts
from edgeship.release.inspect import inspect_component
from edgeship.release.manifest import ComponentKind, Manifest
from edgeship.samples.imagemodel import write_tiny_denoiser
from edgeship.samples.llama import write_tiny_llama
from edgeship.samples.tensorfiles import write_safetensors


NAMES = ("gguf", "onnx", "safetensors", "config", "manifest", "delta-make-gguf", "delta-make-safetensors", "delta-apply")


def refused(call: Callable[[], object]) -> bool:
    """False if ``call`` returned; True if it refused with an EdgeshipError that has a message."""
    try:
        call()
    except EdgeshipError as exc:
        assert exc.message.strip() and "Traceback" not in exc.message, repr(exc.message)
        return True
    return False


class Targets:
    """Seed files (real tiny models and a real patch) in ``workdir``, and the targets."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        rng = np.random.default_rng(3)
        self.models = {
            "gguf": write_tiny_llama(workdir / "seed.gguf"),
            "onnx": write_tiny_denoiser(workdir / "seed.onnx"),
            "safetensors": write_safetensors(workdir / "seed.safetensors", {"a": rng.standard_normal((8, 4)).astype(np.float32),
                                                                            "b": np.arange(6, dtype=np.int64)}),
        }
        self.new_gguf = write_tiny_llama(workdir / "new.gguf", weights={"output_norm.weight": np.full(64, 1.5, np.float32)})
        self.patch = workdir / "seed.delta"
        make_patch(self.models["gguf"], self.new_gguf, self.patch)
        self.run: dict[str, Callable[[bytes], None]] = {name: getattr(self, name.replace("-", "_")) for name in NAMES}

    def seed(self, name: str) -> bytes:
        """A valid input of the target, to start mutating from."""
        if name in ("gguf", "onnx", "safetensors"):
            return self.models[name].read_bytes()
        if name.startswith("delta-make-"):
            return self.models[name.removeprefix("delta-make-")].read_bytes()
        if name == "delta-apply":
            return self.patch.read_bytes()
        if name == "manifest":
            return json.dumps(MANIFEST).encode()
        return b'{"threshold": 0.5, "labels": ["cat", "dog"]}'

    def hot(self, name: str) -> int:
        """How many leading bytes of the seed its parser reads (where mutations go most)."""
        data = self.seed(name)
        if name.endswith("safetensors"):
            return 8 + struct.unpack_from("<Q", data)[0]
        return 8192 if name.endswith("gguf") else (512 if name == "delta-apply" else len(data))

    def _write(self, name: str, data: bytes) -> Path:
        path = self.dir / name
        path.write_bytes(data)
        return path

    def gguf(self, data: bytes) -> None:
        path = self._write("fuzzed.gguf", data)
        refused(lambda: inspect_component(ComponentKind.GGUF, path))
        refused(lambda: read_facts(path))

    def onnx(self, data: bytes) -> None:
        path = self._write("fuzzed.onnx", data)
        refused(lambda: inspect_component(ComponentKind.ONNX, path))

    def safetensors(self, data: bytes) -> None:
        path = self._write("fuzzed.safetensors", data)
        refused(lambda: inspect_component(ComponentKind.SAFETENSORS, path))

    def config(self, data: bytes) -> None:
        path = self._write("config.json", data)
        refused(lambda: inspect_component(ComponentKind.CONFIG, path))

    def manifest(self, data: bytes) -> None:
        parsed: list[Manifest] = []
        if not refused(lambda: parsed.append(Manifest.from_bytes(data))):
            # What parses also serializes (its release ID exists) and parses back equal.
            assert Manifest.from_bytes(parsed[0].canonical_bytes()) == parsed[0] and len(parsed[0].release_id) == 64

    def _delta_make(self, kind: str, data: bytes) -> None:
        old, new = self.models[kind], self._write(f"new-fuzzed.{kind}", data)
        patch, rebuilt = self.dir / "made.delta", self.dir / "rebuilt"
        if not refused(lambda: make_patch(old, new, patch)):
            apply_patch(old, patch, rebuilt)
            assert rebuilt.read_bytes() == data, "the patch does not rebuild the new file"

    def delta_make_gguf(self, data: bytes) -> None:
        self._delta_make("gguf", data)

    def delta_make_safetensors(self, data: bytes) -> None:
        self._delta_make("safetensors", data)

    def delta_apply(self, data: bytes) -> None:
        patch, out = self._write("fuzzed.delta", data), self.dir / "out"
        out.unlink(missing_ok=True)
        if refused(lambda: apply_patch(self.models["gguf"], patch, out)):
            assert not out.exists(), "a refused patch left a file behind"
        else:
            assert out.read_bytes() == self.new_gguf.read_bytes(), "the patch built something else"


MANIFEST = {
    "format": "edgeship-manifest/1",
    "name": "assistant",
    "version": "1.2.0",
    "components": [
        {"name": "llm", "kind": "model/gguf", "path": "model.gguf", "digest": "sha256:" + "ab" * 32, "size": 1024,
         "media_type": "application/vnd.gguf", "meta": {"arch": "llama", "params": 1000}},
        {"name": "config", "kind": "config", "path": "config.json", "digest": "sha256:" + "cd" * 32, "size": 18,
         "media_type": "application/json", "meta": {}},
    ],
    "requirements": {"min_ram": 1 << 30, "arch": ["aarch64"], "accelerator": []},
    "health": {"command": "true", "timeout_s": 30},
    "notes": "first field release",
    "created": "2026-01-01T00:00:00Z",
}
