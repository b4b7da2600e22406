"""Training text from a local directory of JSONL files (one ``{"text": ...}`` per line)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgeship.errors import LearnError

HELD_OUT_EVERY = 5  # every fifth record is held out for the metric, never trained on


@dataclass(frozen=True)
class Corpus:
    train: list[str]
    held_out: list[str]


def read_corpus(directory: Path) -> Corpus:
    """All ``*.jsonl`` records under ``directory``, in file-name order, split train/held-out."""
    directory = Path(directory).resolve()
    if not directory.is_dir():
        raise LearnError(f"no training data directory at {directory}", hint="give a directory of *.jsonl files")
    texts = [text for path in sorted(directory.glob("*.jsonl")) for text in _records(path)]
    if len(texts) < HELD_OUT_EVERY:
        raise LearnError(f"{directory} holds {len(texts)} text records, need at least {HELD_OUT_EVERY}",
                         hint='add *.jsonl files with one {"text": "..."} object per line')
    held = [t for i, t in enumerate(texts) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1]
    train = [t for i, t in enumerate(texts) if i % HELD_OUT_EVERY != HELD_OUT_EVERY - 1]
    return Corpus(train, held)


def _records(path: Path) -> list[str]:
    out: list[str] = []
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except (UnicodeDecodeError, ValueError):
                record = None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise LearnError(f"{path.name} line {number} is not a JSON object with a \"text\" string",
                                 hint='write one {"text": "..."} object per line')
            out.append(record["text"])
    return out
