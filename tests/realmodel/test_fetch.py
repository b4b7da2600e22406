"""The real model arrives whole: the helper's size and hash checks are what every real-model test stands on."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.helpers import real_model


def test_the_real_model_is_the_signed_gemma_file(real_gguf: Path) -> None:
    assert real_gguf.stat().st_size == real_model.SIZE
    with real_gguf.open("rb") as f:
        assert f.read(4) == b"GGUF"
    digest = hashlib.sha256()
    with real_gguf.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    assert digest.hexdigest() == real_model.SHA256
