"""Room on a full disk for the agent's own records: the journal, the status file, the event queue.

A download that fills the disk must not leave the agent unable to write down that it
failed: the end record of the step, the `failed` event and ``last_error`` are what lets it
resume once space is freed. So the agent keeps a file of preallocated bytes in its data dir
and gives it back to the file system when one of those writes finds the disk full; it is
allocated again once there is room.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

from edgeship.errors import StoreError
from edgeship.store.fsutil import write_atomic

log = logging.getLogger("edgeship.agent")

RESERVE_BYTES = 1024 * 1024  # a journal record, a status file and an event are a few KB each
_FULL = (errno.ENOSPC, errno.EDQUOT)


class SpaceReserve:
    def __init__(self, path: Path, size: int = RESERVE_BYTES) -> None:
        self.path = path
        self.size = size

    def fill(self) -> bool:
        """Allocate the reserve if it is not there; False if the disk has no room for it yet."""
        try:
            if self.path.stat().st_size >= self.size:
                return True
        except FileNotFoundError:
            pass
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)  # blocks really taken, not a sparse file
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            if exc.errno not in _FULL:
                raise StoreError(f"cannot allocate {self.path}: {exc.strerror}", hint="check the data dir's permissions") from exc
            self.release()  # a part of it would only keep the disk fuller
            return False
        return True

    def release(self) -> bool:
        """Give the reserved bytes back; False if there were none."""
        try:
            size = self.path.stat().st_size
            self.path.unlink()
        except FileNotFoundError:
            return False
        return size > 0

    def write_atomic(self, dest: Path, data: bytes, mode: int = 0o644) -> None:
        """`write_atomic`, which on a full disk releases the reserve and tries once more."""
        try:
            write_atomic(dest, data, mode)
            return
        except OSError as exc:
            if exc.errno not in _FULL:
                raise
            if not self.release():
                raise _full(dest, exc) from exc
            log.warning("the disk is full: released the agent's reserved %d bytes to write %s", self.size, dest.name)
        try:
            write_atomic(dest, data, mode)
        except OSError as exc:
            raise (_full(dest, exc) if exc.errno in _FULL else exc) from exc


def _full(dest: Path, exc: OSError) -> StoreError:
    return StoreError(f"the disk is full: cannot write {dest.name} ({exc.strerror})",
                      hint="free disk space; the agent keeps its job and resumes it when there is room")


__all__ = ["RESERVE_BYTES", "SpaceReserve"]
