"""Quantize a float GGUF with llama.cpp's own quantizer (``llama_model_quantize``).

llama.cpp decides the per-tensor mix of each file type (e.g. Q4_K_M keeps some
``ffn_down``/``attn_v`` tensors at Q6_K, and the output head at Q6_K). K-quants work on
blocks of 256 values along a tensor row (QK_K); a tensor whose rows are not a multiple of
256 gets a fallback type (Q4_0/Q5_0/Q5_1/Q8_0 class), which the result's ``tensor_types``
shows.
"""

from __future__ import annotations

import ctypes
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeship.errors import OptimizeError, UsageError
from edgeship.optimize.llamacpp import bindings, capture_logs, default_threads
from edgeship.formats import ModelFacts, read_facts, read_header

# The candidates `edgeship optimize` tries by default, best quality first.
DEFAULT_TYPES: tuple[str, ...] = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K")
_PROGRESS = re.compile(r"\[\s*(\d+)\s*/\s*(\d+)\s*\]\s+(\S+)")

# (done, total, tensor name) after each tensor
TensorHook = Callable[[int, int, str], None]


@dataclass(frozen=True)
class QuantizeResult:
    qtype: str
    path: Path
    seconds: float
    source_bytes: int
    output_bytes: int
    tensor_types: dict[str, int] = field(default_factory=dict)

    @property
    def mb_per_s(self) -> float:
        """Source megabytes (10^6) quantized per second."""
        return self.source_bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0


def known_types() -> list[str]:
    L = bindings()
    prefix = "LLAMA_FTYPE_MOSTLY_"
    return sorted(n[len(prefix) :] for n in dir(L) if n.startswith(prefix) and not n.endswith("_GUESSED"))


def parse_types(text: str | None) -> list[str]:
    """'q4_k_m,Q8_0' -> ['Q4_K_M', 'Q8_0']; None -> the default candidates."""
    if not text:
        return list(DEFAULT_TYPES)
    names = [t.strip().upper() for t in text.split(",") if t.strip()]
    known = set(known_types())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(
            f"unknown quantization type{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}",
            hint=f"use llama.cpp file types such as {', '.join(DEFAULT_TYPES)}",
        )
    return list(dict.fromkeys(names))


def require_float_source(source: Path, facts: ModelFacts) -> None:
    """Refuse a source that is already quantized: requantizing compounds the error."""
    if facts.is_quantized:
        raise UsageError(
            f"{source.name} is already quantized ({facts.file_type})",
            hint="quantize from the F32, F16 or BF16 GGUF: requantizing compounds the error",
        )


def load_imatrix(path: Path) -> dict[str, np.ndarray]:
    """Importance per input column of each weight, from a GGUF imatrix (llama-imatrix's output).

    The file holds ``<tensor>.in_sum2`` (sums of squared activations, per expert) and
    ``<tensor>.counts`` (activations seen, per expert); the importance is their ratio.
    """
    header = read_header(path)
    wrong = next((t for t in header.tensors if t.type_name != "F32"), None)
    if wrong is not None:
        raise UsageError(f"{path.name} is not an importance matrix: {wrong.name} is {wrong.type_name}, not F32", hint="make one with llama-imatrix (GGUF output)")
    tensors = {t.name: np.fromfile(path, np.float32, t.n_elements, offset=t.offset) for t in header.tensors}
    out = {}
    for name, sums in tensors.items():
        if not name.endswith(".in_sum2"):
            continue
        weight = name.removesuffix(".in_sum2")
        counts = tensors.get(weight + ".counts")
        if counts is None or counts.size == 0 or sums.size % counts.size:
            raise UsageError(f"{path.name}: {weight} has sums but no matching counts", hint="regenerate the importance matrix")
        per_expert = sums.reshape(counts.size, -1) / np.maximum(counts, 1)[:, None]
        out[weight] = np.ascontiguousarray(per_expert.ravel(), np.float32)
    if not out:
        raise UsageError(f"{path.name} holds no importance data (<tensor>.in_sum2)", hint="make one with llama-imatrix (GGUF output)")
    return out


def _imatrix_array(L: Any, data: dict[str, np.ndarray]) -> Any:
    """A NULL-terminated llama_model_imatrix_data array pointing into ``data``'s buffers
    (the caller keeps ``data`` alive; ctypes keeps the name strings)."""
    entries = (L.llama_model_imatrix_data * (len(data) + 1))()
    for entry, (name, values) in zip(entries, data.items(), strict=False):
        entry.name = name.encode()
        entry.data = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        entry.size = values.size
    return entries


def quantize(
    source: Path,
    output: Path,
    qtype: str,
    *,
    n_threads: int | None = None,
    imatrix: Path | None = None,
    on_tensor: TensorHook | None = None,
) -> QuantizeResult:
    """Quantize ``source`` (F32/F16/BF16 GGUF) to ``qtype`` at ``output``, guided by ``imatrix`` if given."""
    require_float_source(source, read_facts(source))
    qtype = parse_types(qtype)[0]
    L = bindings()
    params = L.llama_model_quantize_default_params()
    params.ftype = getattr(L, f"LLAMA_FTYPE_MOSTLY_{qtype}")
    params.nthread = n_threads or default_threads()
    # Held in this frame until llama.cpp returns: it reads these buffers during quantization.
    importance = load_imatrix(imatrix) if imatrix is not None else None
    if importance is not None:
        params.imatrix = _imatrix_array(L, importance)

    def on_line(line: str) -> None:
        m = _PROGRESS.search(line)
        if m and on_tensor is not None:
            on_tensor(int(m.group(1)), int(m.group(2)), m.group(3).rstrip(","))

    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    start = time.perf_counter()
    with capture_logs(on_line) as lines:
        rc = L.llama_model_quantize(str(source).encode(), str(partial).encode(), params)
    seconds = time.perf_counter() - start
    if rc != 0:
        partial.unlink(missing_ok=True)
        errors = [ln.strip() for ln in lines if "fail" in ln.lower() or "error" in ln.lower()]
        raise OptimizeError(
            f"llama.cpp refused to quantize {source.name} to {qtype}: {errors[-1] if errors else f'code {rc}'}",
            hint="try another --types value",
        )
    # Renamed only when complete: a crash never leaves a half-written variant under its real name.
    partial.replace(output)
    return QuantizeResult(
        qtype=qtype,
        path=output,
        seconds=seconds,
        source_bytes=source.stat().st_size,
        output_bytes=output.stat().st_size,
        tensor_types=read_facts(output).tensor_types,
    )
