"""ONNX models: dynamic int8 quantization with onnxruntime, and what it changed.

Dynamic quantization stores MatMul/Gemm weights as int8 and quantizes activations on the
fly, so it needs no calibration data. Accuracy is the int8 model's outputs against the
float model's on the same inputs: the operator's sample inputs (an ``.npz`` whose keys are
the model's input names), or random ones when none are given. Memory is measured (RSS of
a fresh process holding an onnxruntime session after one inference), not estimated: an
ONNX graph's activations depend on its operators in a way a formula would only guess.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeship.errors import OptimizeError, UsageError
from edgeship.optimize.evaluate import current_rss, run_child
from edgeship.optimize.memory import RUNTIME_BASE
from edgeship.optimize.profiles import Profile
from edgeship.optimize.report import Report, Variant
from edgeship.optimize.select import DEFAULT_HEADROOM, choose
from edgeship.release.inspect import inspect_component
from edgeship.release.manifest import ComponentKind

RANDOM_SAMPLES = 16
_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
                "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
                "tensor(bool)": np.bool_}  # fmt: skip


@dataclass(frozen=True)
class OnnxAccuracy:
    samples: int
    max_abs_error: float
    mean_abs_error: float
    relative_rmse: float  # RMS error over RMS of the float outputs
    cosine: float  # of the flattened outputs
    top1_agreement: float | None  # for [batch, classes] outputs: same argmax


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise OptimizeError("onnxruntime is not installed", hint="install edgeship with the [runtime] extra") from exc
    return onnxruntime


def session(path: Path) -> Any:
    ort = _ort()
    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initializers are not the operator's business
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def quantize_int8(source: Path, output: Path) -> float:
    """Write the dynamic int8 version of ``source``; returns the seconds it took."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        quantize_dynamic(str(source), str(output), weight_type=QuantType.QInt8)
    except Exception as exc:  # onnxruntime's quantizer raises bare Exceptions for unsupported graphs
        output.unlink(missing_ok=True)
        raise OptimizeError(f"onnxruntime could not quantize {source.name}: {exc}") from exc
    return time.perf_counter() - start


def random_inputs(sess: Any, samples: int = RANDOM_SAMPLES, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Inputs shaped as the model declares (symbolic dimensions become 1), standard normal."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(samples):
        feed = {}
        for i in sess.get_inputs():
            dtype = _NUMPY_TYPES.get(i.type)
            if dtype is None:
                raise UsageError(f"input {i.name!r} has type {i.type}; give sample inputs with --inputs")
            shape = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
            values = rng.standard_normal(shape) if np.issubdtype(dtype, np.floating) else rng.integers(0, 2, shape)
            feed[i.name] = values.astype(dtype)
        out.append(feed)
    return out


def load_inputs(path: Path, sess: Any) -> list[dict[str, np.ndarray]]:
    """Sample inputs from an .npz: one array per input name, first axis = samples."""
    try:
        data = np.load(path)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read sample inputs {path}: {exc}", hint="save them with numpy.savez(path, input_name=array)") from exc
    names = [i.name for i in sess.get_inputs()]
    missing = [n for n in names if n not in data.files]
    if missing:
        raise UsageError(f"{path.name} lacks inputs {', '.join(missing)}", hint=f"the model takes {', '.join(names)}")
    n = len(data[names[0]])
    return [{name: data[name][k : k + 1] for name in names} for k in range(n)]


def accuracy(reference: Any, candidate: Any, feeds: Sequence[Mapping[str, np.ndarray]]) -> OnnxAccuracy:
    """Compare every output of ``candidate`` with ``reference``'s over the same inputs."""
    ref_all, cand_all, top1 = [], [], []
    for feed in feeds:
        for r, c in zip(reference.run(None, dict(feed)), candidate.run(None, dict(feed)), strict=True):
            r, c = np.asarray(r, np.float64), np.asarray(c, np.float64)
            ref_all.append(r.ravel())
            cand_all.append(c.ravel())
            if r.ndim == 2 and r.shape[1] > 1:
                top1.extend(r.argmax(axis=1) == c.argmax(axis=1))
    ref, cand = np.concatenate(ref_all), np.concatenate(cand_all)
    diff = np.abs(ref - cand)
    denom = float(np.linalg.norm(ref) * np.linalg.norm(cand))
    return OnnxAccuracy(
        samples=len(feeds),
        max_abs_error=float(diff.max()),
        mean_abs_error=float(diff.mean()),
        relative_rmse=float(np.sqrt(np.mean(diff**2)) / max(np.sqrt(np.mean(ref**2)), 1e-30)),
        cosine=float(ref @ cand / denom) if denom else 1.0,
        top1_agreement=float(np.mean(top1)) if top1 else None,
    )


def measure_rss(path: Path, timeout: float = 300) -> int:
    """Bytes a fresh process grows by to create a session for ``path`` and run it once."""
    return int(run_child("edgeship.optimize.onnx_quant:_rss_child", [str(path)], path.name, timeout)["bytes"])


def _rss_child() -> None:
    _ort()
    before = current_rss()
    sess = session(Path(sys.argv[1]))
    sess.run(None, random_inputs(sess, samples=1)[0])
    sys.stdout.write(json.dumps({"bytes": current_rss() - before}) + "\n")
    sys.stdout.flush()
    os._exit(0)


def _weights(path: Path) -> tuple[int, int]:
    """(bytes, elements) of the model's initializers."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    arrays = [numpy_helper.to_array(t) for t in model.graph.initializer]
    return sum(a.nbytes for a in arrays), sum(a.size for a in arrays)


def optimize_onnx(
    source: Path,
    out_dir: Path,
    profiles: Sequence[Profile],
    *,
    inputs: Path | None = None,
    headroom: float = DEFAULT_HEADROOM,
) -> Report:
    """The float model and its int8 version: accuracy, speed, memory, and a choice per profile."""
    inspect_component(ComponentKind.ONNX, source)  # a clear error for a file that is not ONNX
    target = out_dir / f"{source.stem}.int8.onnx"
    seconds = quantize_int8(source, target)
    reference = session(source)
    feeds = load_inputs(inputs, reference) if inputs else random_inputs(reference)
    variants = []
    for name, path, secs in (("float", source, None), ("int8", target, seconds)):
        sess = session(path)
        acc = accuracy(reference, sess, feeds)
        start = time.perf_counter()
        for feed in feeds:
            sess.run(None, feed)
        per_s = len(feeds) / (time.perf_counter() - start)
        weight_bytes, elements = _weights(path)
        measured = measure_rss(path)
        variants.append(
            Variant(
                name=name,
                path=path,
                source=secs is None,
                file_bytes=path.stat().st_size,
                bits_per_weight=8 * weight_bytes / elements if elements else 0.0,
                memory=measured + RUNTIME_BASE,
                memory_detail={"measured_rss": measured, "runtime": RUNTIME_BASE},
                quantize_seconds=secs,
                metrics={**asdict(acc), "inferences_per_s": per_s, "source_bytes": source.stat().st_size},
            )
        )
    return Report(
        source=source,
        kind="onnx",
        ctx=None,
        headroom=headroom,
        profiles=list(profiles),
        variants=variants,
        choices=choose([v.candidate for v in variants], profiles, headroom),
    )
