"""File plumbing shared by the encoder and the applier."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from edgeship.errors import DeltaError, UsageError


def require_file(path: Path, role: str) -> None:
    if not path.is_file():
        raise UsageError(f"{role} {path} does not exist or is not a file")


def pread(fd: int, offset: int, length: int) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise DeltaError(
            f"short read at offset {offset}: the file changed while it was being read",
            hint="make sure nothing else writes the file, then retry",
        )
    return data


@contextmanager
def atomic_writer(out: Path) -> Iterator[BinaryIO]:
    """Write `out` through a temp file beside it; it appears only if the block succeeds.

    fsync before the rename: after a power cut the rename may survive while the data does not.
    """
    if not out.parent.is_dir():
        raise UsageError(f"output directory {out.parent} does not exist")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(out.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
