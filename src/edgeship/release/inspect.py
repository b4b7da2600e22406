"""Check that a model file is what its kind claims by parsing its header, and describe it.

Only headers and tensor tables are read (GGUF through edgeship.formats, ONNX without its
weights), so a multi-GB model costs little memory here.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from edgeship.errors import ValidationError
from edgeship.formats.files import require_file
from edgeship.formats.gguf import read_header as read_gguf
from edgeship.formats.safetensors import read_header as read_safetensors
from edgeship.release.manifest import ComponentKind


def inspect_component(kind: ComponentKind, path: Path) -> dict[str, Any]:
    """Validate ``path`` as ``kind`` and return metadata for the manifest's ``meta``."""
    require_file(path, "component file")
    if kind is ComponentKind.GGUF:
        return _gguf(path)
    if kind is ComponentKind.LORA:
        return _lora(path)
    if kind is ComponentKind.ONNX:
        return _onnx(path)
    if kind is ComponentKind.SAFETENSORS:
        return _safetensors(path)
    if kind is ComponentKind.CONFIG:
        return _config(path)
    return {}


def _bad(path: Path, kind: str, why: str) -> ValidationError:
    return ValidationError(f"{path} is not a valid {kind} file: {why}", hint="re-export the model, or pick the right --component kind")


def _gguf(path: Path) -> dict[str, Any]:
    header = read_gguf(path)
    types = Counter(t.type_name for t in header.tensors)
    return {
        "architecture": header.architecture,
        "tensors": len(header.tensors),
        "parameters": sum(t.n_elements for t in header.tensors),
        "tensor_types": dict(types),
    }


def _lora(path: Path) -> dict[str, Any]:
    header = read_gguf(path)
    # llama.cpp reads any GGUF given as an adapter, and fails late (or on a model) when it is not one.
    if header.get("general.type") != "adapter" or header.get("adapter.type") != "lora":
        raise _bad(path, "LoRA adapter", "its GGUF metadata does not say general.type=adapter, adapter.type=lora")
    if not any(t.name.endswith(".lora_a") for t in header.tensors):
        raise _bad(path, "LoRA adapter", "it has no .lora_a/.lora_b tensors")
    return {"architecture": header.architecture, "tensors": len(header.tensors),
            "alpha": header.get("adapter.lora.alpha")}


def _onnx(path: Path) -> dict[str, Any]:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        # External weights stay on disk: only the graph is parsed.
        model = onnx.load(str(path), load_external_data=False)
    except DecodeError:
        raise _bad(path, "ONNX", "its bytes do not parse as an ONNX protobuf (truncated, corrupt, or another format)") from None
    except UnicodeDecodeError:
        raise _bad(path, "ONNX", "a name or string in its graph is not UTF-8") from None
    except (ValueError, OSError):
        raise _bad(path, "ONNX", "it cannot be read as an ONNX model") from None
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        # The checker's first line names the node or field at fault; nothing of ours could say it better.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no reason given"
        raise _bad(path, "ONNX", f"its graph fails ONNX's model check: {first}") from None
    except UnicodeDecodeError:  # the checker's own message quotes a name that is not UTF-8
        raise _bad(path, "ONNX", "its graph fails ONNX's model check, on a name that is not UTF-8") from None
    graph = model.graph
    initializers = {i.name for i in graph.initializer}

    def io(values: Any) -> list[dict[str, Any]]:
        out = []
        for v in values:
            if v.name in initializers:
                continue
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in v.type.tensor_type.shape.dim]
            elem = v.type.tensor_type.elem_type
            name = onnx.TensorProto.DataType.Name(elem) if elem in onnx.TensorProto.DataType.values() else str(elem)
            out.append({"name": v.name, "shape": dims, "elem_type": name})
        return out

    return {
        "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None),
        "inputs": io(graph.input),
        "outputs": io(graph.output),
        "initializers": len(graph.initializer),
    }


def _safetensors(path: Path) -> dict[str, Any]:
    header = read_safetensors(path)
    return {"tensors": len(header.tensors), "dtypes": dict(Counter(t.dtype for t in header.tensors))}


def _config(path: Path) -> dict[str, Any]:
    # Configs are shipped as given; JSON ones are checked so a typo never reaches a device.
    if path.suffix.lower() == ".json":
        try:
            json.loads(path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise _bad(path, "JSON config", f"it is not UTF-8 text (byte {exc.start})") from None
        except json.JSONDecodeError as exc:
            raise _bad(path, "JSON config", f"it is not valid JSON (line {exc.lineno}, column {exc.colno})") from None
        except RecursionError:
            raise _bad(path, "JSON config", "it nests JSON too deeply") from None
    return {}
