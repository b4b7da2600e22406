"""Where the server keeps repository files and blobs, behind one small interface.

Keys are repository-relative paths (``metadata/timestamp.json``, ``blobs/sha256/<hex>``);
``repo_key`` is the only way from a URL to a key, so nothing outside the repository can be
named. ``LocalStorage`` keeps them in ``<data-dir>/repository`` and partial uploads in
``<data-dir>/uploads``; ``edgeship.server.s3.S3Storage`` keeps them in an S3-compatible bucket.
What ``locate`` finds knows how to answer a download of itself (a file with Range support, a
proxied object, a redirect), so ``/repo/`` does not care where the bytes are.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from fastapi.responses import FileResponse
from starlette.requests import Request
from starlette.responses import Response

from edgeship.errors import ConflictError, NotFoundError, StoreError, ValidationError
from edgeship.server.problems import RangeNotSatisfiable
from edgeship.store.digest import CHUNK, Digest, iter_file
from edgeship.store.fsutil import atomic_writer, fsync_dir

_REPO_KEYS = re.compile(
    r"^(?:metadata/(?:\d{1,10}\.(?:root|targets|snapshot|bins-[0-9a-f]{1,4})|timestamp|root)\.json"
    r"|releases/[a-z0-9][a-z0-9._-]{0,63}/[0-9A-Za-z][0-9A-Za-z.+-]{0,127}\.json"
    r"|blobs/sha256/[0-9a-f]{64}"
    r"|deltas/sha256/[0-9a-f]{64}/[0-9a-f]{64})$"
)


def repo_key(url_path: str) -> str:
    """The storage key for a ``/repo/…`` path, or NotFoundError for anything that is not one."""
    if not _REPO_KEYS.match(url_path):
        raise NotFoundError(f"/repo/{url_path[:200]} is not a repository file", hint="see docs/protocol.md for the paths under /repo/")
    return url_path


def blob_key(digest: Digest) -> str:
    return f"blobs/sha256/{digest.hex}"


class Stored(Protocol):
    """A repository file that exists, ready to be sent."""

    size: int

    def response(self, request: Request, headers: dict[str, str], media_type: str) -> Response: ...


@dataclass(frozen=True)
class StoredFile:
    path: Path
    size: int
    stat: os.stat_result

    def response(self, request: Request, headers: dict[str, str], media_type: str) -> Response:
        # FileResponse streams the file and answers Range/If-Range and HEAD itself.
        return FileResponse(self.path, stat_result=self.stat, headers=headers, media_type=media_type)


class UploadSink(Protocol):
    """Where ``uploads.receive`` writes a request's bytes, in order."""

    def write(self, data: bytes, /) -> int: ...


class BlobStorage(Protocol):
    def locate(self, key: str) -> Stored | None: ...
    def read(self, key: str) -> bytes: ...
    def has_blob(self, digest: Digest) -> bool: ...
    def install(self, key: str, digest: Digest) -> None: ...
    def put_file(self, key: str, src: Path) -> None: ...
    def upload_offset(self, digest: Digest) -> int: ...
    def open_upload(self, digest: Digest, offset: int, length: int) -> contextlib.AbstractContextManager[UploadSink]: ...
    def commit_upload(self, digest: Digest, size: int) -> None: ...


class LocalStorage:
    def __init__(self, repo_dir: Path, uploads_dir: Path) -> None:
        self.root = Path(repo_dir)
        self.uploads = Path(uploads_dir)

    def locate(self, key: str) -> StoredFile | None:
        path = self.root / key
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return StoredFile(path, st.st_size, st)

    def has_blob(self, digest: Digest) -> bool:
        return (self.root / blob_key(digest)).is_file()

    def read(self, key: str) -> bytes:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError as exc:
            raise NotFoundError(f"/repo/{key} is not stored", hint="push the release again") from exc

    def install(self, key: str, digest: Digest) -> None:
        """Make ``key`` a copy of a stored blob (a release manifest under its release path)."""
        with atomic_writer(self.root / key) as out, open(self.root / blob_key(digest), "rb") as src:
            shutil.copyfileobj(src, out, CHUNK)

    def put_file(self, key: str, src: Path) -> None:
        """Store a local file as ``key``: a hard link when it can (a workspace on the same disk)."""
        dest = self.root / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dest)
        except FileExistsError:
            pass
        except OSError:  # another file system: copy instead
            with atomic_writer(dest) as out, open(src, "rb") as f:
                shutil.copyfileobj(f, out, CHUNK)

    # -- resumable uploads ----------------------------------------------------------------

    def _part(self, digest: Digest) -> Path:
        return self.uploads / "sha256" / f"{digest.hex}.part"

    def upload_offset(self, digest: Digest) -> int:
        blob = self.locate(blob_key(digest))
        if blob is not None:
            return blob.size
        try:
            return self._part(digest).stat().st_size
        except FileNotFoundError:
            return 0

    @contextlib.contextmanager
    def open_upload(self, digest: Digest, offset: int, length: int) -> Iterator[BinaryIO]:
        """The partial file positioned at ``offset``, locked against a concurrent upload of it.

        ``length`` (the blob's full size) lets other backends size their pieces; a file needs none.
        """
        part = self._part(digest)
        part.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+b") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    raise ConflictError(f"blob {digest} is being uploaded by another request", hint="retry once it finishes") from exc
                raise
            have = os.fstat(f.fileno()).st_size
            if offset > have:
                raise RangeNotSatisfiable(f"upload of {digest} is at byte {have}, not {offset}", hint="HEAD the upload URL and resume at Upload-Offset")
            # Resuming below the stored size (or restarting at 0) drops the bytes after it.
            f.truncate(offset)
            f.seek(offset)
            try:
                yield f
            finally:
                f.flush()
                os.fsync(f.fileno())

    def commit_upload(self, digest: Digest, size: int) -> None:
        """Check a finished upload against its digest and move it into the repository."""
        part = self._part(digest)
        h = hashlib.sha256()
        got = 0
        for block in iter_file(part):
            h.update(block)
            got += len(block)
        if got != size or h.hexdigest() != digest.hex:
            part.unlink(missing_ok=True)
            raise ValidationError(
                f"uploaded bytes ({got} bytes, sha256:{h.hexdigest()}) do not match {digest} ({size} bytes)",
                hint="the upload was discarded; upload the blob again from offset 0",
            )
        dest = self.root / blob_key(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.chmod(part, 0o444)
            os.replace(part, dest)
            fsync_dir(dest.parent)
        except OSError as exc:
            raise StoreError(f"cannot store blob {digest}: {exc.strerror}", hint="check free disk space in the data dir") from exc
