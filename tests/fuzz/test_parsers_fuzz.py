"""Model files, configs, manifests and delta patches from hostile bytes, through the public
entry points that read them (tests/fuzz/targets.py): release inspection (GGUF, ONNX,
safetensors, JSON config), the model facts the optimizer and runtime read, manifest
parsing, delta make (which parses both models) and delta apply. Each answers normally or
raises an EdgeshipError with a message, never a library's exception (IndexError,
UnicodeDecodeError, numpy or protobuf errors...); a patch that is made rebuilds the new
file exactly; a damaged patch yields exactly its target or nothing at all."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeship.release.manifest import Manifest
from tests.fuzz.strategies import JSON, mutated, mutated_bytes
from tests.fuzz.targets import MANIFEST, NAMES, Targets

EXAMPLES = 120  # per target in CI; `benchmarks/fuzz.py` runs them for longer, coverage-guided
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
BINARY = [n for n in NAMES if n != "config"]  # configs are fuzzed as JSON below


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Targets]:
    yield Targets(tmp_path_factory.mktemp("fuzz"))


@pytest.mark.parametrize("name", BINARY)
def test_mutated_seed(name: str, targets: Targets) -> None:
    @FUZZ
    @given(mutated_bytes(targets.seed(name), targets.hot(name)))
    def run(data: bytes) -> None:
        targets.run[name](data)

    run()


def test_safetensors_headers_as_json(targets: Targets) -> None:
    """The JSON header itself mutated: valid framing, hostile content."""
    data = targets.seed("safetensors")
    n = struct.unpack_from("<Q", data)[0]
    header, body = json.loads(data[8 : 8 + n]), data[8 + n :]

    @FUZZ
    @given(mutated(header))
    def run(doc: object) -> None:
        raw = json.dumps(doc).encode()
        targets.run["safetensors"](struct.pack("<Q", len(raw)) + raw + body)

    run()


def test_manifests_as_json(targets: Targets) -> None:
    assert Manifest.from_bytes(json.dumps(MANIFEST).encode()).name == "assistant"

    @FUZZ
    @given(mutated(MANIFEST))
    def run(doc: object) -> None:
        targets.run["manifest"](json.dumps(doc).encode())

    run()


def test_json_configs(targets: Targets) -> None:
    @FUZZ
    @given(st.one_of(JSON.map(lambda v: json.dumps(v).encode()), st.binary(max_size=200),
                     st.integers(1, 100_000).map(lambda depth: b"[" * depth)))
    def run(data: bytes) -> None:
        targets.run["config"](data)

    run()
