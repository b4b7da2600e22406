"""Put a directory tree back as it was when a block of work fails.

``release push`` stores blobs, writes a manifest, builds deltas and signs metadata, in that
order; a failure at any step (a bad file, a wrong passphrase, a full disk, Ctrl-C) must leave
the workspace exactly as it was. Staging every write elsewhere would need each writer to know
about it; instead the tree's names are noted before, whatever is new is removed after a
failure, and the few files the work rewrites in place are put back from a copy. The tree must
have one writer meanwhile: a file another process adds during the block would be removed too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from edgeship.store.fsutil import write_atomic


def _names(root: Path) -> set[str]:
    """Every file and directory under ``root``, relative to it."""
    names = set()
    for top, dirs, files in os.walk(root):
        rel = os.path.relpath(top, root)
        names.update(os.path.normpath(os.path.join(rel, n)) for n in (*dirs, *files))
    return names


@contextlib.contextmanager
def undo_on_failure(root: Path, rewritten: Sequence[Path] = ()) -> Iterator[None]:
    """Run a block; if it raises, remove what it added under ``root`` and restore ``rewritten``.

    ``rewritten`` names the existing files the block may replace (not just add); their bytes
    are kept in memory, so they should be small.
    """
    before = _names(root)
    saved = {p: p.read_bytes() for p in rewritten if p.is_file()}
    try:
        yield
    except BaseException:
        _remove_new(root, before)
        for path, data in saved.items():
            if not path.is_file() or path.read_bytes() != data:
                write_atomic(path, data)
        raise


def _remove_new(root: Path, before: set[str]) -> None:
    # Bottom-up, so a new directory is empty by the time it is reached.
    for top, dirs, files in os.walk(root, topdown=False):
        rel = os.path.relpath(top, root)
        for name in files:
            if os.path.normpath(os.path.join(rel, name)) not in before:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(top, name))
        for name in dirs:
            if os.path.normpath(os.path.join(rel, name)) not in before:
                with contextlib.suppress(FileNotFoundError):
                    os.rmdir(os.path.join(top, name))
