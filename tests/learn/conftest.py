from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeship.samples.llama import write_tiny_llama

README = Path(__file__).resolve().parents[2] / "README.md"


def write_corpus(directory: Path, records: int) -> Path:
    """Real English text (this repository's README, a paragraph a record) as JSONL."""
    paragraphs = [p.strip() for p in README.read_text().split("\n\n") if len(p.strip()) > 80]
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "notes.jsonl").open("w") as f:
        for text in paragraphs[:records]:
            f.write(json.dumps({"text": text}) + "\n")
    return directory


@pytest.fixture
def base_model(tmp_path: Path) -> Path:
    return write_tiny_llama(tmp_path / "base.gguf")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "data", 10)
