"""A model whose numbers an accelerated plan really changes on this CPU-only machine.

This machine has no GPU or NPU, so no accelerator can give a wrong answer here. Two real
parts stand in for one, with no mock of onnxruntime:

- ``AzureExecutionProvider``: an execution provider other than the CPU's that this
  onnxruntime build really offers (it takes no node of an ordinary model, so the CPU runs them);
- the session setting the CUDA plan really carries (``SESSION_CONFIG["cuda"]``: GELU as its
  tanh approximation), which onnxruntime really applies: on the GELU layer below, the output
  moves by up to 4.7e-4 (84.6 dB PSNR against the exact answer) while the plain CPU plan stays
  within 2.4e-7 (156 dB). A health check asking for 120 dB fails the first and passes the second.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edgeship.runtime.plan import CPU_PROVIDER, SESSION_CONFIG, BackendPlan

SHAPE = (1, 3, 16, 16)
MIN_PSNR = 120.0  # dB: the exact erf form passes (156 dB here), the tanh approximation fails (84.6 dB)
ACCELERATED = BackendPlan(providers=("AzureExecutionProvider", CPU_PROVIDER), session_config=dict(SESSION_CONFIG["cuda"]),
                          reason="stands in for a CUDA device's plan (see tests.helpers.gelu)")


def write_gelu(path: Path) -> Path:
    """A GELU layer as PyTorch exports ``nn.GELU()`` (x/sqrt2 -> Erf -> +1 -> *x -> *0.5); onnxruntime fuses it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    consts = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("sqrt2", math.sqrt(2)), ("one", 1.0), ("half", 0.5))]
    nodes = [helper.make_node("Div", ["x", "sqrt2"], ["scaled"]), helper.make_node("Erf", ["scaled"], ["erf"]),
             helper.make_node("Add", ["erf", "one"], ["shifted"]), helper.make_node("Mul", ["x", "shifted"], ["twice"]),
             helper.make_node("Mul", ["twice", "half"], ["y"])]
    graph = helper.make_graph(nodes, "gelu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(SHAPE))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(SHAPE))], consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgeship-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_probe(directory: Path) -> tuple[Path, Path]:
    """The check's input (-4..4) and its exact GELU, computed in float64 with math.erf: ``probe.npy``, ``exact.npy``."""
    x = np.linspace(-4, 4, math.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    wide = x.astype(np.float64)
    exact = (0.5 * wide * (1 + np.vectorize(math.erf)(wide / math.sqrt(2)))).astype(np.float32)
    probe, reference = directory / "probe.npy", directory / "exact.npy"
    np.save(probe, x)
    np.save(reference, exact)
    return probe, reference


def check(component: str = "gelu", *, reference: str = "exact") -> dict[str, object]:
    """The health check: ``component`` on the probe, within MIN_PSNR of ``reference``."""
    return {"type": "image", "component": component, "input": "probe", "reference": reference, "min_psnr": MIN_PSNR}
