"""Resumable blob uploads from operators (``release push --server``).

``HEAD`` tells how many bytes of a blob the server has (``Upload-Offset``); ``PATCH`` with
``Upload-Offset`` and ``Upload-Length`` appends the body there; when the offset reaches the
length the server checks the sha256 and publishes the blob. Bytes are stored as they
arrive, so an upload cut at any point resumes from what was received.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

import anyio
from starlette.requests import ClientDisconnect

from edgeship.errors import UsageError
from edgeship.server.problems import PayloadTooLarge
from edgeship.server.schemas import UploadStatus
from edgeship.server.storage import BlobStorage
from edgeship.store.digest import Digest

T = TypeVar("T")


def status(storage: BlobStorage, digest: Digest) -> UploadStatus:
    return UploadStatus(digest=str(digest), offset=storage.upload_offset(digest), complete=storage.has_blob(digest))


@contextlib.asynccontextmanager
async def _in_thread(cm: contextlib.AbstractContextManager[T]) -> AsyncIterator[T]:
    """Enter and leave a storage context in a worker thread: for S3 both are network round
    trips (finding the upload, saving the tail of up to a part), which must not stall the event loop."""
    value = await anyio.to_thread.run_sync(cm.__enter__)
    try:
        yield value
    except BaseException as exc:
        if not await anyio.to_thread.run_sync(cm.__exit__, type(exc), exc, exc.__traceback__):
            raise
    else:
        await anyio.to_thread.run_sync(cm.__exit__, None, None, None)


def _header_int(value: str | None, name: str) -> int:
    if value is None:
        raise UsageError(f"the {name} header is missing", hint="see docs/server.md, 'Uploading blobs'")
    if not value.isdigit():
        raise UsageError(f"the {name} header must be a byte count, got {value[:40]!r}")
    return int(value)


async def receive(
    storage: BlobStorage, digest: Digest, offset_header: str | None, length_header: str | None, body: AsyncIterator[bytes], limit: int
) -> UploadStatus:
    offset = _header_int(offset_header, "Upload-Offset")
    length = _header_int(length_header, "Upload-Length")
    if length > limit:
        raise PayloadTooLarge(f"blob of {length} bytes is over this server's limit of {limit}", hint="raise --max-blob-bytes on the server")
    if await anyio.to_thread.run_sync(storage.has_blob, digest):
        return await anyio.to_thread.run_sync(status, storage, digest)  # deduplicated: nothing to write
    if offset > length:
        raise UsageError(f"Upload-Offset {offset} is past Upload-Length {length}")
    async with _in_thread(storage.open_upload(digest, offset, length)) as f:
        written = offset
        try:
            async for chunk in body:
                written += len(chunk)
                if written > length:
                    raise UsageError(f"more than Upload-Length ({length}) bytes sent for {digest}", hint="send exactly the blob's bytes")
                await anyio.to_thread.run_sync(f.write, chunk)
        except ClientDisconnect:
            # The bytes so far stay stored; the client resumes from HEAD's Upload-Offset.
            return UploadStatus(digest=str(digest), offset=written, complete=False)
    if written == length:
        await anyio.to_thread.run_sync(storage.commit_upload, digest, length)
    return await anyio.to_thread.run_sync(status, storage, digest)
