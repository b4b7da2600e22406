"""apply_patch: stream a patch, never leave a wrong output file behind."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from edgeship.delta.codec import check_data_block, decode_piece
from edgeship.delta.files import pread
from edgeship.delta.format import (
    FULL_BLOB_HINT,
    Copies,
    Data,
    End,
    Header,
    corrupt,
    read_block,
    read_header,
)
from edgeship.delta.listing import file_sha256
from edgeship.errors import DeltaError, UsageError
from edgeship.formats.files import require_file, require_output
from edgeship.store.fsutil import atomic_writer

COPY_STEP = 4 * 1024 * 1024  # bytes per read when copying a source range

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def _check_source(old: Path, header: Header) -> None:
    size = old.stat().st_size
    if size != header.source_size or file_sha256(old) != header.source_digest:
        raise DeltaError(
            f"delta patch was made for a different source file than {old.name} "
            f"(expected sha256:{header.source_digest.hex()})",
            hint=FULL_BLOB_HINT,
        )


def _check_range(offset: int, length: int, source_size: int) -> None:
    if offset + length > source_size:
        raise corrupt(f"op reads source bytes {offset}..{offset + length} beyond its {source_size}")


def _output(block: Copies | Data, src: int, source_size: int) -> Iterator[bytes]:
    if isinstance(block, Copies):
        for op in block.ops:
            _check_range(op.src_offset, op.length, source_size)
            for rel in range(0, op.length, COPY_STEP):
                yield pread(src, op.src_offset + rel, min(COPY_STEP, op.length - rel))
        return
    check_data_block(block)
    _check_range(block.ref_offset, block.ref_length, source_size)
    yield decode_piece(block, pread(src, block.ref_offset, block.ref_length))


def _block_length(block: Copies | Data) -> int:
    if isinstance(block, Copies):
        return sum(op.length for op in block.ops)
    return block.out_length


def _write_target(patch: BinaryIO, header: Header, src: int, out: BinaryIO) -> None:
    digest = hashlib.sha256()
    written = 0
    while not isinstance(block := read_block(patch), End):
        if written + _block_length(block) > header.target_size:
            raise corrupt(f"ops write more than the declared {header.target_size} bytes")
        for chunk in _output(block, src, header.source_size):
            digest.update(chunk)
            out.write(chunk)
            written += len(chunk)
    if patch.read(1):
        raise corrupt("bytes after the end block")
    if written != header.target_size:
        raise corrupt(f"ops write {written} bytes, the header declares {header.target_size}")
    if digest.digest() != header.target_digest:
        raise DeltaError(
            "patched file does not match the target digest; it was discarded", hint=FULL_BLOB_HINT
        )


def apply_patch(old: Path, patch: Path, out: Path, *, expected_digest: str | None = None) -> str:
    """Build `out` from `old` and `patch`; returns "sha256:<hex>" of the verified result.

    `expected_digest` is the digest the caller trusts (e.g. from signed metadata); a patch
    that builds anything else is refused before a byte is written.
    """
    old, patch, out = Path(old), Path(patch), Path(out)
    require_file(old, "old file")
    require_file(patch, "patch")
    require_output(out, "output")
    if expected_digest is not None and not _DIGEST.fullmatch(expected_digest):
        raise UsageError(f"expected digest {expected_digest!r} is not of the form sha256:<64 hex>")
    with patch.open("rb") as p:
        header = read_header(p)
        result = "sha256:" + header.target_digest.hex()
        if expected_digest is not None and expected_digest != result:
            raise DeltaError(
                f"delta patch builds {result}, but {expected_digest} was expected",
                hint=FULL_BLOB_HINT,
            )
        _check_source(old, header)
        with old.open("rb") as src, atomic_writer(out) as f:
            _write_target(p, header, src.fileno(), f)
    return result
