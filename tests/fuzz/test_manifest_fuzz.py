"""Release manifests from any bytes: a valid manifest, or a ValidationError with a message.
A manifest that parses also serializes (its release ID exists) and parses back equal."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeship.errors import EdgeshipError
from edgeship.release.manifest import Manifest
from tests.fuzz.strategies import mutated

VALID = {
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
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


def check(raw: bytes) -> None:
    try:
        manifest = Manifest.from_bytes(raw)
    except EdgeshipError as exc:
        assert exc.message.strip()
        return
    again = Manifest.from_bytes(manifest.canonical_bytes())
    assert again == manifest and len(manifest.release_id) == 64


def test_the_valid_manifest_parses() -> None:
    assert Manifest.from_bytes(json.dumps(VALID).encode()).name == "assistant"


@FUZZ
@given(mutated(VALID))
def test_mutated_manifests(doc: object) -> None:
    check(json.dumps(doc).encode())


@FUZZ
@given(st.binary(max_size=512))
def test_arbitrary_bytes(raw: bytes) -> None:
    check(raw)
