"""Change one string in a GGUF file's metadata, copying everything else byte for byte.

Tensor offsets count from the start of the data section, so the metadata can grow or shrink
without touching a tensor: the new file is the old header with one entry added or replaced,
the same tensor infos, padding to the alignment, and the same data. The model loads as
before, and a delta from the old file costs about the changed entry.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

from edgeship.errors import UsageError
from edgeship.formats.gguf import read_header

_STRING = 8
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")
_COPY_BUFFER = 8 << 20  # bytes per read while copying the tensor data


def with_string(src: Path, dst: Path, key: str, value: str) -> None:
    """Write ``src`` to ``dst`` with string metadata ``key`` set to ``value`` (added or replaced)."""
    if dst.resolve() == src.resolve():
        raise UsageError(f"{dst} is the file being read", hint="write the edited model to another path")
    header = read_header(src)
    name, text = key.encode(), value.encode()
    with src.open("rb") as f:
        head = f.read(header.infos_span[1])
        entries = [head[start:end] for k, (start, end) in header.kv_spans.items() if k != key]
        entries.append(_U64.pack(len(name)) + name + _U32.pack(_STRING) + _U64.pack(len(text)) + text)
        # magic, version and tensor count stay; the metadata count follows them.
        out = head[:16] + _U64.pack(len(entries)) + b"".join(entries) + head[header.infos_span[0] :]
        out += bytes(-len(out) % header.alignment)
        with dst.open("wb") as w:
            w.write(out)
            f.seek(header.data_offset)
            shutil.copyfileobj(f, w, _COPY_BUFFER)
