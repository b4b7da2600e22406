"""ONNX layout: initializer bytes inside the protobuf, or inside an external-data file.

The protobuf is walked tag by tag and large fields are skipped with a seek, so the model is
never loaded into memory (`onnx.load` would hold the whole file).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from edgeship.delta.listing import Kind, Segment
from edgeship.errors import ValidationError

MODEL_SUFFIX = ".onnx"
MAX_STRING = 64 * 1024  # bytes; a longer name or key means this is not the protobuf we think

# TensorProto.DataType → bytes per element (types not listed plane bytewise).
_WIDTH = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}
_MODEL_GRAPH, _GRAPH_INITIALIZER = 7, 5
_T_DATA_TYPE, _T_NAME, _T_RAW, _T_EXTERNAL = 2, 8, 9, 13
_ENTRY_KEY, _ENTRY_VALUE = 1, 2


@dataclass(frozen=True)
class _Field:
    number: int
    value: int  # a varint's value, or a length-delimited field's start offset
    length: int = -1  # -1 for varints


@dataclass
class _Tensor:
    name: str = ""
    data_type: int = 0
    raw: tuple[int, int] | None = None  # (offset, length) of raw_data in the model file
    external: dict[str, str] = field(default_factory=dict)

    def segment(self, offset: int, length: int) -> Segment:
        width = _WIDTH.get(self.data_type, 1)
        return Segment(offset, length, Kind.TENSOR, self.name, width, f"onnx:{self.data_type}")


def _bad(f: BinaryIO, why: str) -> ValidationError:
    return ValidationError(f"{f.name} is not a valid ONNX file: {why}", hint="re-export the model")


def _varint(f: BinaryIO) -> int:
    start = f.tell()
    result = shift = 0
    while shift < 64:
        b = f.read(1)
        if not b:
            raise _bad(f, f"its protobuf ends inside the number at byte {start} (truncated?)")
        result |= (b[0] & 0x7F) << shift
        if b[0] < 0x80:
            return result
        shift += 7
    raise _bad(f, f"the protobuf number at byte {start} runs over 10 bytes")


def _fields(f: BinaryIO, start: int, end: int) -> Iterator[_Field]:
    """The fields of the message in [start, end); the caller may read inside a yielded
    length-delimited field, the walk resumes after it."""
    f.seek(start)
    while f.tell() < end:
        at = f.tell()
        key = _varint(f)
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield _Field(number, _varint(f))
        elif wire in (1, 5):
            f.seek(8 if wire == 1 else 4, 1)
        elif wire == 2:
            length = _varint(f)
            offset = f.tell()
            if offset + length > end:
                raise _bad(f, f"field {number} at byte {at} claims {length} bytes, past the end of its message at byte {end}")
            yield _Field(number, offset, length)
            f.seek(offset + length)
        else:
            raise _bad(f, f"field {number} at byte {at} has protobuf wire type {wire}, which ONNX never uses")
    if f.tell() != end:
        raise _bad(f, f"a protobuf message overruns its end at byte {end}")


def _string(f: BinaryIO, fld: _Field) -> str:
    if fld.length < 0 or fld.length > MAX_STRING:
        raise _bad(f, f"field {fld.number} at byte {fld.value} should be a name but is not text of at most {MAX_STRING} bytes")
    f.seek(fld.value)
    return f.read(fld.length).decode("utf-8", "replace")


def _tensor(f: BinaryIO, msg: _Field) -> _Tensor:
    t = _Tensor()
    for fld in _fields(f, msg.value, msg.value + msg.length):
        if fld.number == _T_DATA_TYPE and fld.length < 0:
            t.data_type = fld.value
        elif fld.number == _T_NAME:
            t.name = _string(f, fld)
        elif fld.number == _T_RAW and fld.length >= 0:
            t.raw = (fld.value, fld.length)
        elif fld.number == _T_EXTERNAL and fld.length >= 0:
            entry = {e.number: _string(f, e) for e in _fields(f, fld.value, fld.value + fld.length)}
            t.external[entry.get(_ENTRY_KEY, "")] = entry.get(_ENTRY_VALUE, "")
    return t


def _initializers(model: Path) -> list[_Tensor]:
    size = model.stat().st_size
    out: list[_Tensor] = []
    with model.open("rb") as f:
        for graph in _fields(f, 0, size):
            if graph.number != _MODEL_GRAPH or graph.length < 0:
                continue
            for init in _fields(f, graph.value, graph.value + graph.length):
                if init.number == _GRAPH_INITIALIZER and init.length >= 0:
                    out.append(_tensor(f, init))
    return out


def _external_tensors(data_file: Path) -> list[Segment]:
    """Tensors that a sibling `.onnx` model stores in `data_file` (empty if none does)."""
    for model in sorted(data_file.parent.glob(f"*{MODEL_SUFFIX}")):
        try:
            tensors = _initializers(model)
        except ValidationError:
            continue
        mine = [t for t in tensors if t.external.get("location") == data_file.name]
        if mine:
            try:
                return [
                    t.segment(int(t.external.get("offset", "0")), int(t.external["length"]))
                    for t in mine
                ]
            except (KeyError, ValueError):
                raise ValidationError(
                    f"{model} is not a valid ONNX file: an external-data entry for {data_file.name} lacks a numeric offset or length",
                    hint="re-export the model",
                ) from None
    return []


def sniff(path: Path) -> bool:
    """A model by its suffix (protobuf has no magic), or a data file a sibling model names."""
    return path.suffix == MODEL_SUFFIX or bool(_external_tensors(path))


def regions(path: Path) -> list[Segment]:
    if path.suffix != MODEL_SUFFIX:
        external = _external_tensors(path)
        if not external:
            raise ValidationError(f"no {MODEL_SUFFIX} model beside {path} stores tensors in it", hint="keep the model next to its data file")
        return external
    tensors = [t for t in _initializers(path) if t.raw is not None and t.raw[1]]
    segments = [t.segment(*t.raw) for t in tensors if t.raw is not None]
    # Graph, nodes and opset come first in the file: code them against the old ones.
    first = min((s.offset for s in segments), default=path.stat().st_size)
    return [Segment(0, first, Kind.HEADER, "header"), *segments]
