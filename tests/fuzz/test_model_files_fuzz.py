"""Model files and delta patches from hostile bytes, through the public entry points that
read them: release inspection (GGUF, ONNX, safetensors, JSON config), the model facts the
optimizer and runtime read, delta make (which parses both models) and delta apply. Each
answers normally or raises an EdgeshipError with a message, never a library's exception
(IndexError, UnicodeDecodeError, numpy or protobuf errors...). A patch that is made
rebuilds the new file exactly; a patch that applies yields exactly its target."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeship.delta import apply_patch, make_patch
from edgeship.errors import EdgeshipError
from edgeship.formats.facts import read_facts
from edgeship.release.inspect import inspect_component
from edgeship.release.manifest import ComponentKind
from edgeship.samples.imagemodel import write_tiny_denoiser
from edgeship.samples.llama import write_tiny_llama
from edgeship.samples.tensorfiles import write_safetensors
from tests.fuzz.strategies import JSON, mutated, mutated_bytes

EXAMPLES = 120  # per target in CI; `benchmarks/fuzz.py` runs them for longer, coverage-guided
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("seeds")
    rng = np.random.default_rng(3)
    return {
        "gguf": write_tiny_llama(d / "tiny.gguf"),
        "onnx": write_tiny_denoiser(d / "tiny.onnx"),
        "safetensors": write_safetensors(d / "tiny.safetensors", {"a": rng.standard_normal((8, 4)).astype(np.float32),
                                                                  "b": np.arange(6, dtype=np.int64)}),
    }


def survives(call: Callable[[], object]) -> bool:
    """True if ``call`` returned; False if it refused with an EdgeshipError that has a message."""
    try:
        call()
    except EdgeshipError as exc:
        assert exc.message.strip() and "Traceback" not in exc.message
        return False
    return True


def header_size(kind: str, data: bytes) -> int:
    """How far into the seed the parsers read (where mutations go most)."""
    if kind == "safetensors":
        return 8 + struct.unpack_from("<Q", data)[0]
    return {"gguf": 8192, "onnx": len(data)}[kind]


@pytest.mark.parametrize("kind", ["gguf", "onnx", "safetensors"])
def test_inspect_and_read_model_headers(kind: str, seeds: dict[str, Path], tmp_path: Path) -> None:
    seed = seeds[kind].read_bytes()
    target = tmp_path / f"fuzzed.{kind}"

    @FUZZ
    @given(mutated_bytes(seed, header_size(kind, seed)))
    def run(data: bytes) -> None:
        target.write_bytes(data)
        survives(lambda: inspect_component(ComponentKind(f"model/{kind}"), target))
        if kind == "gguf":
            survives(lambda: read_facts(target))

    run()


def test_safetensors_headers_as_json(seeds: dict[str, Path], tmp_path: Path) -> None:
    """The JSON header itself mutated (valid framing, hostile content)."""
    data = seeds["safetensors"].read_bytes()
    n = struct.unpack_from("<Q", data)[0]
    header, body = json.loads(data[8 : 8 + n]), data[8 + n :]
    target = tmp_path / "fuzzed.safetensors"

    @FUZZ
    @given(mutated(header))
    def run(doc: object) -> None:
        raw = json.dumps(doc).encode()
        target.write_bytes(struct.pack("<Q", len(raw)) + raw + body)
        survives(lambda: inspect_component(ComponentKind.SAFETENSORS, target))

    run()


def test_json_configs(tmp_path: Path) -> None:
    target = tmp_path / "config.json"

    @FUZZ
    @given(st.one_of(JSON.map(lambda v: json.dumps(v).encode()), st.binary(max_size=200),
                     st.integers(1, 100_000).map(lambda depth: b"[" * depth)))
    def run(data: bytes) -> None:
        target.write_bytes(data)
        survives(lambda: inspect_component(ComponentKind.CONFIG, target))

    run()


@pytest.mark.parametrize("kind", ["gguf", "safetensors"])
def test_delta_make_from_a_damaged_new_model(kind: str, seeds: dict[str, Path], tmp_path: Path) -> None:
    old = seeds[kind]
    seed = old.read_bytes()
    new, patch, rebuilt = tmp_path / f"new.{kind}", tmp_path / "p.delta", tmp_path / "rebuilt"

    @FUZZ
    @given(mutated_bytes(seed, header_size(kind, seed)))
    def run(data: bytes) -> None:
        new.write_bytes(data)
        if survives(lambda: make_patch(old, new, patch)):
            apply_patch(old, patch, rebuilt)
            assert rebuilt.read_bytes() == data

    run()


def test_delta_apply_of_a_damaged_patch(seeds: dict[str, Path], tmp_path: Path) -> None:
    old = seeds["gguf"]
    new = tmp_path / "new.gguf"
    write_tiny_llama(new, weights={"output_norm.weight": np.full(64, 1.5, np.float32)})
    good = tmp_path / "good.delta"
    make_patch(old, new, good)
    seed, target = good.read_bytes(), new.read_bytes()
    patch, out = tmp_path / "fuzzed.delta", tmp_path / "out"

    @FUZZ
    @given(mutated_bytes(seed, 512))
    def run(data: bytes) -> None:
        patch.write_bytes(data)
        out.unlink(missing_ok=True)
        if survives(lambda: apply_patch(old, patch, out)):
            assert out.read_bytes() == target
        else:
            assert not out.exists()  # a refused patch leaves no file behind

    run()
