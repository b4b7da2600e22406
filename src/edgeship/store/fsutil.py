"""Crash-safe file writes (temp file in the same directory, fsync, rename, fsync the directory),
and the free-space rule every writer of a large file checks first."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


Writer = Callable[[Path, bytes, int], None]  # (dest, data, mode), as `write_atomic`


def fsync_dir(path: Path) -> None:
    # A rename is only durable once the directory entry is on disk too.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(dest: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Yield a file; on clean exit it replaces ``dest`` atomically, on error it vanishes."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    # Held until the rename: `sweep_temps` leaves a temp alone while its writer lives (the
    # kernel drops the lock of a killed one).
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_atomic(dest: Path, data: bytes, mode: int = 0o644) -> None:
    with atomic_writer(dest, mode) as f:
        f.write(data)


TEMP_GRACE_S = 10.0  # a temp younger than this may be between its mkstemp and its flock


def sweep_temps(directory: Path, name: str = "*") -> list[Path]:
    """Delete the temps `atomic_writer` left for ``directory/name`` when killed before its rename.

    A temp is deleted only if no process holds its lock and it is older than TEMP_GRACE_S,
    so a writer in another process (the feedback command, the runtime) never loses its file.
    Returns what was deleted.
    """
    removed = []
    for tmp in directory.glob(f".{name}.*.tmp") if directory.is_dir() else ():
        try:
            fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue  # gone already (renamed by its writer) or not a plain file
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if time.time() - os.fstat(fd).st_mtime < TEMP_GRACE_S:
                continue
            os.unlink(tmp)
            removed.append(tmp)
        except BlockingIOError:
            continue  # a live writer holds it
        except FileNotFoundError:
            continue
        finally:
            os.close(fd)
    return removed


def free_space(directory: Path) -> int:
    """Bytes an unprivileged writer may still use on ``directory``'s file system."""
    return shutil.disk_usage(directory).free


def room_shortfall(need: int, free: int, keep_free: int = 0) -> str | None:
    """None when ``free`` bytes hold ``need`` and leave ``keep_free``; else the shortfall in
    words for the caller's error: "needs 3.0 MiB and 1.0 MiB must stay free, but 2.0 MiB is free"."""
    if not need or free >= need + keep_free:
        return None
    margin = f" and {_mib(keep_free)} must stay free" if keep_free else ""
    return f"needs {_mib(need)}{margin}, but {_mib(free)} is free"


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"
