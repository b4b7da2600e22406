"""Blobs in a local directory: ``<root>/sha256/<hex>``."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from edgeship.errors import StoreError
from edgeship.store.digest import CHUNK, Digest, hash_file, iter_file
from edgeship.store.fsutil import fsync_dir


class LocalBlobStore:
    """Stores each blob once, read-only, written through temp file + fsync + rename."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, digest: Digest) -> Path:
        return self.root / "sha256" / digest.hex

    def has(self, digest: Digest) -> bool:
        return self.path(digest).is_file()

    def put_file(self, src: Path) -> tuple[Digest, int]:
        """Copy a file in, hashing while copying; returns its digest and size."""
        try:
            return self.put_stream(iter_file(src))
        except OSError as exc:
            raise StoreError(f"cannot read {src}: {exc.strerror}", hint="check the path and its permissions") from exc

    def put_bytes(self, data: bytes) -> tuple[Digest, int]:
        return self.put_stream(data[i : i + CHUNK] for i in range(0, len(data), CHUNK))

    def put_stream(self, blocks: Iterable[bytes], expected: Digest | None = None) -> tuple[Digest, int]:
        """Write blocks to the store; with ``expected`` the content must hash to it."""
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        size = 0
        fd, tmp = tempfile.mkstemp(dir=tmp_dir, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                for block in blocks:
                    h.update(block)
                    f.write(block)
                    size += len(block)
                f.flush()
                os.fsync(f.fileno())
            digest = Digest(h.hexdigest())
            if expected is not None and digest != expected:
                raise StoreError(f"content hashes to {digest}, expected {expected}", hint="the source is corrupt; fetch it again")
            dest = self.path(digest)
            # Already stored (deduplicated): the temp file goes in `finally`.
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(tmp, 0o444)
                os.replace(tmp, dest)
                fsync_dir(dest.parent)
            return digest, size
        except OSError as exc:
            raise StoreError(f"cannot write to blob store {self.root}: {exc.strerror}", hint="check free disk space and permissions") from exc
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def verify(self, digest: Digest) -> bool:
        """Rehash a stored blob; False if it is missing or its bytes changed."""
        p = self.path(digest)
        return p.is_file() and hash_file(p)[0] == digest

    def digests(self) -> Iterable[Digest]:
        d = self.root / "sha256"
        if d.is_dir():
            for p in sorted(d.iterdir()):
                yield Digest(p.name)
