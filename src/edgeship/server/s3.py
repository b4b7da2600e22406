"""Repository files in an S3-compatible bucket (AWS S3, SeaweedFS, MinIO, Ceph RGW): ``--blob-store s3://bucket/prefix``.

Keys under the prefix mirror ``<data-dir>/repository``: ``blobs/sha256/<hex>``,
``deltas/sha256/<a>/<b>``, ``releases/<name>/<version>.json``. TUF metadata (``metadata/``)
stays in the data dir, where the server signs it; it is small and read through ``metadata``.

Uploads keep every piece of state in the bucket, so any instance can continue an upload
another one began:

* ``uploads/sha256/<hex>``: a multipart upload; each full part (8 MiB, more for blobs over
  80 GiB so that 10,000 parts suffice) is sent to S3 as soon as it has arrived;
* ``uploads/sha256/<hex>.tail``: received bytes that do not fill a part yet, rewritten at the
  end of each request (S3 parts other than the last must be at least 5 MiB);
* at ``Upload-Length`` the tail becomes the last part, the upload is completed into
  ``uploads/sha256/<hex>``, read back to check its sha256, and copied to ``blobs/``.

Downloads are proxied (HEAD to find the object, then one GET with the client's byte range,
streamed in 1 MiB pieces), or, with a presign expiry, blobs and deltas answer 307 to a
presigned GET URL; the device checks the bytes against the signed targets either way.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from edgeship.errors import NotFoundError, StoreError, ValidationError
from edgeship.server.problems import RangeNotSatisfiable
from edgeship.server.storage import LocalStorage, Stored, blob_key
from edgeship.store.digest import CHUNK, Digest

MIN_PART = 8 << 20  # bytes; S3 wants >= 5 MiB for every part but the last
MAX_PARTS = 10_000  # S3's limit per multipart upload
_TAIL_START = "start"  # object metadata: the blob offset a tail's first byte belongs at
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_MISSING = {"404", "NoSuchKey", "NotFound"}


def part_size(length: int) -> int:
    """Bytes per part for a blob of ``length``: 8 MiB, or the MiB multiple that fits 10,000 parts."""
    need = -(-length // MAX_PARTS)
    return max(MIN_PART, -(-need // (1 << 20)) << 20)


@dataclass(frozen=True)
class S3Object:
    """An object found by HEAD, answered by proxying its bytes or by a redirect."""

    store: S3Storage
    key: str
    size: int
    etag: str
    last_modified: datetime

    def response(self, request: Request, headers: dict[str, str], media_type: str) -> Response:
        if self.store.presign_expiry_s is not None and self.key.startswith(("blobs/", "deltas/")):
            # no-store: a cached redirect would outlive the URL's signature.
            return RedirectResponse(self.store.presigned_url(self.key), status_code=307, headers={"cache-control": "no-store"})
        headers = {"accept-ranges": "bytes", "etag": self.etag, "last-modified": formatdate(self.last_modified.timestamp(), usegmt=True)} | headers
        if request.method == "HEAD":
            return Response(headers={**headers, "content-length": str(self.size)}, media_type=media_type)
        span = requested_range(request.headers.get("range"), request.headers.get("if-range"), headers["etag"], self.size)
        if span is None:
            return StreamingResponse(self.store.stream(self.key, None), headers={**headers, "content-length": str(self.size)}, media_type=media_type)
        start, end = span
        headers |= {"content-length": str(end - start + 1), "content-range": f"bytes {start}-{end}/{self.size}"}
        return StreamingResponse(self.store.stream(self.key, span), status_code=206, headers=headers, media_type=media_type)


def requested_range(value: str | None, if_range: str | None, etag: str, size: int) -> tuple[int, int] | None:
    """The one byte range to send (inclusive), or None for the whole object.

    Malformed and multi-range requests get the whole object, as RFC 9110 allows; devices only
    ever ask for ``bytes=<have>-``.
    """
    if value is None or (if_range is not None and if_range != etag):
        return None
    m = _RANGE.fullmatch(value.strip())
    if m is None or (m[1] == "" and m[2] == "") or (m[1] and m[2] and int(m[2]) < int(m[1])):
        return None
    if m[1] == "":
        start, end = max(0, size - int(m[2])), size - 1
    else:
        start, end = int(m[1]), min(int(m[2]), size - 1) if m[2] else size - 1
    if start >= size or end < start:
        raise RangeNotSatisfiable(f"range {value[:60]} is outside the {size} bytes stored", hint=f"ask for bytes below {size}")
    return start, end


@dataclass
class _Progress:
    """How far an unfinished upload got: completed parts, then the tail."""

    upload_id: str | None = None
    parts: list[dict[str, Any]] = field(default_factory=list)  # {"PartNumber", "ETag", "Size"} from 1, contiguous
    tail: int = 0  # bytes in a tail that starts where the parts end (a stale tail counts 0)

    @property
    def in_parts(self) -> int:
        return sum(p["Size"] for p in self.parts)

    @property
    def offset(self) -> int:
        return self.in_parts + self.tail


class _PartWriter:
    """The file ``uploads.receive`` writes to: full parts go to S3, the rest to the tail on close.

    Bytes the client sends below what is stored are skipped rather than truncating: a blob is
    named by its digest, so bytes at an offset never differ, and a stored prefix that somehow
    does is caught by the digest check at the end (which discards the upload).
    """

    def __init__(self, store: S3Storage, digest: Digest, progress: _Progress, offset: int, part: int, tail: bytes) -> None:
        self.store, self.digest, self.progress, self.part = store, digest, progress, part
        self.pos = offset  # blob offset of the next byte the client sends
        self.buffer = bytearray(tail)  # bytes from progress.in_parts on, not yet a part
        self.dirty = False

    @property
    def have(self) -> int:
        return self.progress.in_parts + len(self.buffer)

    def write(self, data: bytes) -> int:
        skip = min(len(data), max(0, self.have - self.pos))
        self.pos += len(data)
        if skip < len(data):
            self.buffer += memoryview(data)[skip:]
            self.dirty = True
        while len(self.buffer) >= self.part:
            self.store.upload_part(self.digest, self.progress, bytes(self.buffer[: self.part]))
            del self.buffer[: self.part]
        return len(data)

    def close(self) -> None:
        if self.dirty:
            self.store.save_tail(self.digest, self.progress.in_parts, bytes(self.buffer))


class S3Storage:
    def __init__(self, bucket: str, prefix: str, metadata: LocalStorage, presign_expiry_s: int | None = None, client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix  # "" or ending in "/"
        self.metadata = metadata
        self.presign_expiry_s = presign_expiry_s
        # Clients are thread-safe; one per storage, so two servers in one process never share.
        # SigV4 everywhere: presigned SigV2 URLs are refused by newer S3-compatible servers.
        self.client = client or boto3.session.Session().client("s3", config=Config(signature_version="s3v4", retries={"mode": "standard"}))
        self._transfer = TransferConfig(multipart_threshold=1 << 30, multipart_chunksize=256 << 20)

    @classmethod
    def from_url(cls, url: str, metadata: LocalStorage, presign_expiry_s: int | None = None) -> S3Storage:
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        prefix = prefix.strip("/")
        return cls(bucket, prefix + "/" if prefix else "", metadata, presign_expiry_s)

    def _k(self, key: str) -> str:
        return self.prefix + key

    @contextlib.contextmanager
    def _s3(self, what: str) -> Iterator[None]:
        """Turn S3 failures into StoreError saying what was attempted and what to check."""
        try:
            yield
        except ClientError as exc:
            err = exc.response.get("Error", {})
            raise StoreError(
                f"S3 refused to {what} in bucket {self.bucket}: {err.get('Code', '?')} {err.get('Message', '')}".rstrip(),
                hint="check that the bucket exists and the credentials (AWS_ACCESS_KEY_ID) may read and write it",
            ) from exc
        except BotoCoreError as exc:
            raise StoreError(f"cannot {what} in S3 bucket {self.bucket}: {exc}", hint="check AWS_ENDPOINT_URL, AWS_REGION and the AWS credentials") from exc
        except S3UploadFailedError as exc:  # upload_file wraps the ClientError in boto3's own
            raise StoreError(
                f"cannot {what} in S3 bucket {self.bucket}: {exc}",
                hint="check that the bucket exists and the credentials (AWS_ACCESS_KEY_ID) may write it",
            ) from exc

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._k(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return None
            with self._s3(f"look up {key}"):
                raise

    # -- reading --------------------------------------------------------------------------

    def locate(self, key: str) -> Stored | None:
        if key.startswith("metadata/"):
            return self.metadata.locate(key)
        head = self._head(key)
        if head is None:
            return None
        return S3Object(self, key, head["ContentLength"], head["ETag"], head["LastModified"])

    def read(self, key: str) -> bytes:
        if key.startswith("metadata/"):
            return self.metadata.read(key)
        if self._head(key) is None:
            raise NotFoundError(f"/repo/{key} is not in bucket {self.bucket}", hint="push the release again")
        return b"".join(self.stream(key, None))

    def stream(self, key: str, span: tuple[int, int] | None) -> Iterator[bytes]:
        """The object's bytes (or the inclusive ``span``); the GET is sent before the first byte is asked for."""
        extra = {"Range": f"bytes={span[0]}-{span[1]}"} if span else {}
        with self._s3(f"read {key}"):
            body = self.client.get_object(Bucket=self.bucket, Key=self._k(key), **extra)["Body"]
        return self._chunks(body, key)

    def _chunks(self, body: Any, key: str) -> Iterator[bytes]:
        try:
            with self._s3(f"read {key}"):
                yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def presigned_url(self, key: str) -> str:
        with self._s3(f"presign {key}"):
            return self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self._k(key)}, ExpiresIn=self.presign_expiry_s
            )

    def has_blob(self, digest: Digest) -> bool:
        return self._head(blob_key(digest)) is not None

    def install(self, key: str, digest: Digest) -> None:
        """Make ``key`` a copy of a stored blob, inside the bucket (a release manifest under its release path)."""
        with self._s3(f"copy {digest} to {key}"):
            self.client.copy({"Bucket": self.bucket, "Key": self._k(blob_key(digest))}, self.bucket, self._k(key), Config=self._transfer)

    def put_file(self, key: str, src: Path) -> None:
        """Upload a local file as ``key`` (multipart when large); for ``server init``."""
        with self._s3(f"upload {key}"):
            self.client.upload_file(str(src), self.bucket, self._k(key), Config=self._transfer)

    # -- resumable uploads ----------------------------------------------------------------

    def _staging(self, digest: Digest) -> str:
        return f"uploads/sha256/{digest.hex}"

    def _tail(self, digest: Digest) -> str:
        return f"uploads/sha256/{digest.hex}.tail"

    def _upload_ids(self, digest: Digest) -> list[str]:
        """Unfinished multipart uploads of the staging key, oldest first (two racing starts pick the same)."""
        key = self._k(self._staging(digest))
        with self._s3(f"list uploads of {digest}"):
            found = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=key).get("Uploads", [])
        return [u["UploadId"] for u in sorted((u for u in found if u["Key"] == key), key=lambda u: (u["Initiated"], u["UploadId"]))]

    def _progress(self, digest: Digest) -> _Progress:
        ids = self._upload_ids(digest)
        progress = _Progress(ids[0] if ids else None)
        if progress.upload_id is not None:
            with self._s3(f"list parts of {digest}"):
                pages = self.client.get_paginator("list_parts").paginate(
                    Bucket=self.bucket, Key=self._k(self._staging(digest)), UploadId=progress.upload_id
                )
                parts = sorted((p for page in pages for p in page.get("Parts", [])), key=lambda p: p["PartNumber"])
            for number, part in enumerate(parts, start=1):
                if part["PartNumber"] != number:
                    break  # only a gapless run of parts is a prefix of the blob
                progress.parts.append({"PartNumber": number, "ETag": part["ETag"], "Size": part["Size"]})
        tail = self._head(self._tail(digest))
        if tail is not None and tail.get("Metadata", {}).get(_TAIL_START) == str(progress.in_parts):
            progress.tail = tail["ContentLength"]
        return progress

    def upload_offset(self, digest: Digest) -> int:
        for key in (blob_key(digest), self._staging(digest)):
            head = self._head(key)
            if head is not None:
                return head["ContentLength"]
        return self._progress(digest).offset

    @contextlib.contextmanager
    def open_upload(self, digest: Digest, offset: int, length: int) -> Iterator[_PartWriter]:
        staged = self._head(self._staging(digest))
        progress = _Progress(parts=[{"PartNumber": 1, "ETag": "", "Size": staged["ContentLength"]}]) if staged else self._progress(digest)
        if offset > progress.offset:
            raise RangeNotSatisfiable(f"upload of {digest} is at byte {progress.offset}, not {offset}", hint="HEAD the upload URL and resume at Upload-Offset")
        tail = b""
        if progress.tail and not staged:
            with self._s3(f"read the partial upload of {digest}"):
                tail = self.client.get_object(Bucket=self.bucket, Key=self._k(self._tail(digest)))["Body"].read()
        writer = _PartWriter(self, digest, progress, offset, part_size(length), tail)
        try:
            yield writer
        finally:
            # Runs on a cut connection too: what arrived is kept for the resume.
            writer.close()

    def upload_part(self, digest: Digest, progress: _Progress, data: bytes) -> None:
        key = self._k(self._staging(digest))
        with self._s3(f"upload part of {digest}"):
            if progress.upload_id is None:
                progress.upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
            number = len(progress.parts) + 1
            etag = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=progress.upload_id, PartNumber=number, Body=data)["ETag"]
        progress.parts.append({"PartNumber": number, "ETag": etag, "Size": len(data)})

    def save_tail(self, digest: Digest, start: int, data: bytes) -> None:
        with self._s3(f"save the partial upload of {digest}"):
            if data:
                self.client.put_object(Bucket=self.bucket, Key=self._k(self._tail(digest)), Body=data, Metadata={_TAIL_START: str(start)})
            else:
                self.client.delete_object(Bucket=self.bucket, Key=self._k(self._tail(digest)))

    def _assemble(self, digest: Digest) -> None:
        """Make the staging object hold every byte received: the parts plus the tail as the last one."""
        if self._head(self._staging(digest)) is not None:
            return  # completed before, then interrupted before the digest check
        progress = self._progress(digest)
        tail = b""
        if progress.tail:
            with self._s3(f"read the partial upload of {digest}"):
                tail = self.client.get_object(Bucket=self.bucket, Key=self._k(self._tail(digest)))["Body"].read()
        key = self._k(self._staging(digest))
        if progress.upload_id is None:
            with self._s3(f"store {digest}"):
                self.client.put_object(Bucket=self.bucket, Key=key, Body=tail)
            return
        if tail:
            self.upload_part(digest, progress, tail)
        parts = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in progress.parts]
        with self._s3(f"complete the upload of {digest}"):
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=progress.upload_id, MultipartUpload={"Parts": parts})

    def _discard(self, digest: Digest) -> None:
        """Remove the staging object, the tail and every unfinished multipart upload of ``digest``."""
        key = self._k(self._staging(digest))
        with self._s3(f"clean up the upload of {digest}"):
            for upload_id in self._upload_ids(digest):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": key}, {"Key": self._k(self._tail(digest))}], "Quiet": True}
            )

    def commit_upload(self, digest: Digest, size: int) -> None:
        """Check a finished upload against its digest (reading it back) and copy it into ``blobs/``."""
        self._assemble(digest)
        h = hashlib.sha256()
        got = 0
        for block in self.stream(self._staging(digest), None):
            h.update(block)
            got += len(block)
        if got != size or h.hexdigest() != digest.hex:
            self._discard(digest)
            raise ValidationError(
                f"uploaded bytes ({got} bytes, sha256:{h.hexdigest()}) do not match {digest} ({size} bytes)",
                hint="the upload was discarded; upload the blob again from offset 0",
            )
        with self._s3(f"store {digest}"):
            self.client.copy(
                {"Bucket": self.bucket, "Key": self._k(self._staging(digest))}, self.bucket, self._k(blob_key(digest)), Config=self._transfer
            )
        self._discard(digest)
