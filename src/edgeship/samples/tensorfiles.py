"""Write GGUF, safetensors and ONNX files from numpy tensors (for tests, benchmarks, demos)."""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

SAFETENSORS_DTYPES = {
    np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
    np.dtype(np.int64): "I64", np.dtype(np.int32): "I32", np.dtype(np.int16): "I16",
    np.dtype(np.int8): "I8", np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL",
}  # fmt: skip


def write_gguf(
    path: Path,
    tensors: Mapping[str, np.ndarray],
    metadata: Mapping[str, Any],
    tensor_types: Mapping[str, Any] | None = None,
) -> Path:
    """A GGUF file; `tensor_types` maps a name to a `gguf.GGMLQuantizationType` to quantize to.

    Metadata types follow the Python value: str, bool, int (uint32 when it fits, else int64),
    float (float32), and lists of those (arrays).
    """
    import gguf

    meta = dict(metadata)
    writer = gguf.GGUFWriter(str(path), str(meta.pop("general.architecture", "edgeship")))
    if "general.alignment" in meta:  # the writer must pad tensors to it, not only record it
        writer.add_custom_alignment(int(meta.pop("general.alignment")))
    for key, value in meta.items():
        _add_gguf_value(writer, key, value)
    for name, array in tensors.items():
        qtype = (tensor_types or {}).get(name)
        if qtype is None or qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            dtype = np.float16 if qtype == gguf.GGMLQuantizationType.F16 else array.dtype
            writer.add_tensor(name, np.ascontiguousarray(array, dtype=dtype))
        else:
            quantized = gguf.quants.quantize(np.asarray(array, np.float32), qtype)
            writer.add_tensor(name, quantized, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _add_gguf_value(writer: Any, key: str, value: Any) -> None:
    if isinstance(value, (str, bytes)):
        writer.add_string(key, value)
    elif isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, int):
        if 0 <= value < 2**32:
            writer.add_uint32(key, value)
        else:
            writer.add_int64(key, value)
    elif isinstance(value, float):
        writer.add_float32(key, value)
    elif isinstance(value, Sequence):
        writer.add_array(key, list(value))
    else:
        raise TypeError(f"cannot store {type(value).__name__} in GGUF metadata ({key})")


def write_safetensors(
    path: Path, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None
) -> Path:
    """A safetensors file, written tensor by tensor (no copy of the whole model in memory)."""
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name, array in tensors.items():
        header[name] = {
            "dtype": SAFETENSORS_DTYPES[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the spec pads the header so tensors start 8-aligned
    with Path(path).open("wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for array in tensors.values():
            f.write(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes())
    return path


def write_onnx(
    path: Path, initializers: Mapping[str, np.ndarray], external_data: bool = False
) -> Path:
    """An ONNX model whose graph outputs each initializer through an Identity node.

    With `external_data`, tensor bytes go to `<name>.data` beside the model.
    """
    import onnx
    from onnx import helper, numpy_helper

    inits = [numpy_helper.from_array(np.asarray(a), name) for name, a in initializers.items()]
    nodes = [helper.make_node("Identity", [name], [f"{name}.out"]) for name in initializers]
    outputs = [
        helper.make_tensor_value_info(
            f"{name}.out", helper.np_dtype_to_tensor_dtype(np.asarray(a).dtype), list(np.shape(a))
        )
        for name, a in initializers.items()
    ]
    graph = helper.make_graph(nodes, "edgeship-sample", [], outputs, initializer=inits)
    model = helper.make_model(graph, producer_name="edgeship")
    path = Path(path)
    if external_data:
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=path.name + ".data",
            size_threshold=0,
        )
    else:
        onnx.save_model(model, str(path))
    return path


SCENARIOS = ("finetune", "metadata", "append", "reorder", "full", "requant")
_PARTS = ("attn_q", "attn_k", "ffn_up", "ffn_down")


def write_gguf_pair(
    old: Path, new: Path, scenario: str, *, size: int, vocab: int = 32000, seed: int = 0
) -> list[str]:
    """Two releases of a ~`size`-byte F16 GGUF model differing as `scenario` says.

    finetune: 10% of tensors changed; metadata: a token and the chat template; append: new
    tensors at the end (a merged adapter); reorder: same values, reordered and renamed;
    full: every weight nudged (a full fine-tune); requant: Q8_0 requantized to Q4_0.
    Returns the names of the new file's tensors whose bytes are not in the old file.
    """
    import gguf

    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}")
    rng = np.random.default_rng(seed)
    n_tensors, cols = 40, 1024
    rows = max(1, size // (n_tensors * cols * 2))
    names = [f"blk.{i // len(_PARTS)}.{_PARTS[i % len(_PARTS)]}.weight" for i in range(n_tensors)]
    weights = {
        n: (rng.standard_normal((rows, cols), np.float32) * 0.02).astype(np.float16) for n in names
    }
    tokens = [f"\u2581tok{i}_{rng.integers(1 << 20):x}" for i in range(vocab)]
    meta: dict[str, Any] = {
        "general.architecture": "llama",
        "general.name": "edgeship-sample",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}",
    }
    new_weights, new_meta, changed = dict(weights), dict(meta), list[str]()
    old_types: dict[str, Any] | None = None
    new_types: dict[str, Any] | None = None
    if scenario == "finetune":
        changed = names[:: len(names) // 4]
        for n in changed:
            noise = rng.standard_normal((rows, cols), np.float32) * 0.002
            new_weights[n] = (weights[n].astype(np.float32) + noise).astype(np.float16)
    elif scenario == "metadata":
        new_meta["tokenizer.ggml.tokens"] = [*tokens[:5], "\u2581edgeship", *tokens[6:]]
        new_meta["tokenizer.chat_template"] = "<|user|>{{ messages[-1].content }}<|assistant|>"
    elif scenario == "append":
        changed = [f"blk.{i}.lora_a.weight" for i in range(2)]
        for n in changed:
            new_weights[n] = (rng.standard_normal((rows, cols), np.float32) * 0.02).astype(
                np.float16
            )
    elif scenario == "reorder":
        renamed = {n: n.replace("blk.", "layers.") if i % 2 else n for i, n in enumerate(names)}
        new_weights = {renamed[n]: weights[n] for n in reversed(names)}
    elif scenario == "full":
        changed = names
        for n in names:
            w = weights[n].astype(np.float32)
            nudge = 1 + rng.standard_normal((rows, cols), np.float32) * 1e-3
            new_weights[n] = (w * nudge).astype(np.float16)
    else:
        changed = names
        old_types = dict.fromkeys(names, gguf.GGMLQuantizationType.Q8_0)
        new_types = dict.fromkeys(names, gguf.GGMLQuantizationType.Q4_0)
    write_gguf(old, weights, meta, old_types)
    write_gguf(new, new_weights, new_meta, new_types)
    return changed
