"""Check that a model file is what its kind claims by parsing its header, and describe it.

Only headers and tensor tables are read (GGUF through edgeship.formats, ONNX without its
weights), so a multi-GB model costs little memory here.
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from pathlib import Path
from typing import Any

from edgeship.errors import ValidationError
from edgeship.formats.gguf import read_header
from edgeship.release.manifest import ComponentKind

# Third-party parsers signal malformed input with any of these.
_PARSE_ERRORS = (ValueError, IndexError, KeyError, TypeError, OverflowError, struct.error, EOFError, UnicodeDecodeError)
SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024  # the format's own limit


def inspect_component(kind: ComponentKind, path: Path) -> dict[str, Any]:
    """Validate ``path`` as ``kind`` and return metadata for the manifest's ``meta``."""
    if not path.is_file():
        raise ValidationError(f"{path}: no such file", hint="check the path given to --component")
    if kind is ComponentKind.GGUF:
        return _gguf(path)
    if kind is ComponentKind.ONNX:
        return _onnx(path)
    if kind is ComponentKind.SAFETENSORS:
        return _safetensors(path)
    if kind is ComponentKind.CONFIG:
        return _config(path)
    return {}


def _bad(path: Path, kind: str, why: object) -> ValidationError:
    return ValidationError(f"{path} is not a valid {kind} file: {why}", hint="re-export the model, or pick the right --component kind")


def _gguf(path: Path) -> dict[str, Any]:
    header = read_header(path)
    types = Counter(t.type_name for t in header.tensors)
    return {
        "architecture": header.architecture,
        "tensors": len(header.tensors),
        "parameters": sum(t.n_elements for t in header.tensors),
        "tensor_types": dict(types),
    }


def _onnx(path: Path) -> dict[str, Any]:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        # External weights stay on disk: only the graph is parsed.
        model = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(model)
    except (DecodeError, onnx.checker.ValidationError, *_PARSE_ERRORS) as exc:
        raise _bad(path, "ONNX", str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc
    graph = model.graph
    initializers = {i.name for i in graph.initializer}

    def io(values: Any) -> list[dict[str, Any]]:
        out = []
        for v in values:
            if v.name in initializers:
                continue
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in v.type.tensor_type.shape.dim]
            out.append({"name": v.name, "shape": dims, "elem_type": onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type)})
        return out

    return {
        "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None),
        "inputs": io(graph.input),
        "outputs": io(graph.output),
        "initializers": len(graph.initializer),
    }


def _safetensors(path: Path) -> dict[str, Any]:
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError("file is shorter than the 8-byte header length")
            (n,) = struct.unpack("<Q", head)
            if n > SAFETENSORS_MAX_HEADER or 8 + n > size:
                raise ValueError(f"header length {n} does not fit in a {size}-byte file")
            header = json.loads(f.read(n))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        data_size = size - 8 - n
        tensors = 0
        dtypes: dict[str, int] = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            start, end = info["data_offsets"]
            if not 0 <= start <= end <= data_size:
                raise ValueError(f"tensor {name!r} data {start}..{end} lies outside the {data_size}-byte data area")
            tensors += 1
            dtypes[info["dtype"]] = dtypes.get(info["dtype"], 0) + 1
    except _PARSE_ERRORS as exc:
        raise _bad(path, "safetensors", exc) from exc
    return {"tensors": tensors, "dtypes": dtypes}


def _config(path: Path) -> dict[str, Any]:
    # Configs are shipped as given; JSON ones are checked so a typo never reaches a device.
    if path.suffix.lower() == ".json":
        try:
            json.loads(path.read_bytes())
        except _PARSE_ERRORS as exc:
            raise _bad(path, "JSON config", exc) from exc
    return {}
