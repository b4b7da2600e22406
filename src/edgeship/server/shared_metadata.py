"""The TUF metadata in the database, and each instance's data dir as a cache of it.

Several instances sign with the same online keys but on different hosts, so the signed
files cannot live only on a local disk: the ``repo_metadata`` table holds every file, and
each signing transaction stamps what it wrote with one new generation. ``MetadataCache``
copies newer rows into the local ``metadata/`` directory, versioned files before
``timestamp.json``, so a device is never handed a timestamp naming a snapshot this instance
cannot serve.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.orm import Session

from edgeship.server.models import RepoMetadata
from edgeship.store.fsutil import write_atomic

TIMESTAMP = "timestamp.json"
MUTABLE = (TIMESTAMP, "root.json")  # rewritten in place; every other name is written once


def generation(session: Session) -> int | None:
    """The repository's generation in the database, or None when it holds no metadata yet."""
    return session.scalar(select(RepoMetadata.generation).where(RepoMetadata.name == TIMESTAMP))


def read(session: Session, name: str) -> bytes | None:
    """One metadata file as the database holds it."""
    return session.scalar(select(RepoMetadata.data).where(RepoMetadata.name == name))


def save(session: Session, files: Mapping[str, bytes]) -> int:
    """Store ``files`` (name → signed bytes) as one new generation; returns it.

    Call it in the transaction that holds the repository lock, so generations never collide.
    """
    gen = (session.scalar(select(func.max(RepoMetadata.generation))) or 0) + 1
    now = datetime.now(timezone.utc)
    for name, data in files.items():
        row = session.get(RepoMetadata, name)
        if row is None:
            session.add(RepoMetadata(name=name, data=data, generation=gen, written_at=now))
        else:
            row.data, row.generation, row.written_at = data, gen, now
    session.flush()
    return gen


def local_files(metadata_dir: Path) -> dict[str, bytes]:
    """Every metadata file of a repository directory (to seed the database from it)."""
    return {p.name: p.read_bytes() for p in sorted(metadata_dir.glob("*.json"))}


class MetadataCache:
    """Keeps one instance's ``metadata/`` directory equal to the database's newest generation."""

    def __init__(self, metadata_dir: Path) -> None:
        self.metadata_dir = metadata_dir
        self.generation: int | None = None  # None: not known to match; the next refresh rewrites all
        # Reentrant: signing holds it and refreshes inside; a refresh in another thread must not
        # rewrite the older generation's timestamp over the one being signed.
        self.lock = threading.RLock()

    def refresh(self, session: Session) -> bool:
        """Copy what the database has newer than this cache; True if anything changed.

        With no metadata in the database (a server from before it held them), the local
        directory is left as it is: ``ServerRepository.adopt`` moves it in at startup.
        """
        current = generation(session)
        if current is None or current == self.generation:
            return False
        with self.lock:
            if self.generation is not None and current < self.generation:
                self.generation = None  # the database was restored from a backup: compare every file
            query = select(RepoMetadata.name, RepoMetadata.data, RepoMetadata.generation)
            if self.generation is not None:
                query = query.where(RepoMetadata.generation > self.generation)
            rows = session.execute(query).all()
            if not rows:
                return False
            # With no generation known (at start, after a failed signing) every row is rewritten.
            self._write(rows)
            # Every generation rewrites the timestamp, so the newest row is the timestamp's.
            self.generation = max(r.generation for r in rows)
            return True

    def restore_mutable(self, session: Session) -> None:
        """Rewrite ``timestamp.json`` and ``root.json`` where they differ from the database.

        Worker processes sharing a data dir each keep their own generation: one may have
        written an older timestamp over the one another just refreshed to.
        """
        with self.lock:
            self._write(session.execute(select(RepoMetadata.name, RepoMetadata.data).where(RepoMetadata.name.in_(MUTABLE))).all())

    def _write(self, rows: Sequence[Row[Any]]) -> None:
        """Write the rows' files that differ: versioned files first, root.json next, the
        timestamp last, since it is what names the rest."""
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        for row in sorted(rows, key=lambda r: (r.name == TIMESTAMP, r.name == "root.json")):
            path = self.metadata_dir / row.name
            if not (path.is_file() and path.read_bytes() == row.data):
                write_atomic(path, row.data)

    def drop_uncommitted(self, session: Session) -> list[str]:
        """Delete the local versioned files the database does not hold; returns their names.

        Call it under the repository lock, so no signing is between writing files and committing.
        """
        with self.lock:
            known = set(session.scalars(select(RepoMetadata.name)))
            stray = sorted(p.name for p in self.metadata_dir.glob("*.json") if p.name not in MUTABLE and p.name not in known)
            for name in stray:
                (self.metadata_dir / name).unlink()
            self.generation = None  # and the next refresh compares every file with the database
            return stray

    def discard(self, written: Mapping[str, bytes]) -> None:
        """Undo a signing that did not commit: its versioned files go (else they would be taken
        for the newest versions), and the next refresh rewrites ``timestamp.json`` and ``root.json``.

        Only files still holding the bytes it wrote: never one another process signed since.
        """
        with self.lock:
            for name, data in written.items():
                path = self.metadata_dir / name
                if name not in MUTABLE and path.is_file() and path.read_bytes() == data:
                    path.unlink()
            self.generation = None
