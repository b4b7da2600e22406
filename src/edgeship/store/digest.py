"""sha256 digests as "sha256:<hex>", computed in chunks so no file is read whole."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from edgeship.errors import UsageError

CHUNK = 1 << 20  # 1 MiB: large enough for throughput, small enough for a 512 MB device
_RE = re.compile(r"^sha256:([0-9a-f]{64})$")


@dataclass(frozen=True, order=True)
class Digest:
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        m = _RE.match(text)
        if not m:
            raise UsageError(f"{text!r} is not a digest", hint="digests look like sha256:<64 hex digits>")
        return cls(m.group(1))

    def __str__(self) -> str:
        return f"sha256:{self.hex}"


def iter_file(path: Path, chunk: int = CHUNK) -> Iterable[bytes]:
    with open(path, "rb") as f:
        while block := f.read(chunk):
            yield block


def hash_file(path: Path) -> tuple[Digest, int]:
    """Digest and size of a file, streamed."""
    h = hashlib.sha256()
    size = 0
    for block in iter_file(path):
        h.update(block)
        size += len(block)
    return Digest(h.hexdigest()), size
