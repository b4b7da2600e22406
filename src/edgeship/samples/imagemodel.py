"""A tiny ONNX image-to-image model (a 3x3 smoothing convolution: a 'denoiser')."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_tiny_denoiser(path: Path, *, strength: float = 1.0, size: int = 32) -> Path:
    """NCHW float32 [1,3,size,size] in and out; ``strength`` blends the blur into the identity."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    blur = np.full((3, 3), 1 / 9, np.float32)
    ident = np.zeros((3, 3), np.float32)
    ident[1, 1] = 1.0
    kernel2d = strength * blur + (1 - strength) * ident
    weight = np.zeros((3, 3, 3, 3), np.float32)
    for c in range(3):
        weight[c, c] = kernel2d  # per-channel: colours never mix
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "weight"], ["denoised"], pads=[1, 1, 1, 1])],
        "tiny_denoiser",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("denoised", TensorProto.FLOAT, [1, 3, size, size])],
        [numpy_helper.from_array(weight, "weight")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgeship")
    model.ir_version = 8  # readable by every onnxruntime still in the field
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
