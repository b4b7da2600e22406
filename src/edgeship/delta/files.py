"""File plumbing shared by the encoder and the applier."""

from __future__ import annotations

import os

from edgeship.errors import DeltaError


def pread(fd: int, offset: int, length: int) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise DeltaError(
            f"short read at offset {offset}: the file changed while it was being read",
            hint="make sure nothing else writes the file, then retry",
        )
    return data
