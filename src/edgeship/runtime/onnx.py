"""ONNX models through onnxruntime: named tensors in and out, and images for image-to-image models."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from PIL import Image

from edgeship.errors import RuntimeBackendError, UsageError
from edgeship.release.manifest import Component
from edgeship.runtime import imaging
from edgeship.runtime.backend import BackendOptions, Prepared, require
from edgeship.runtime.plan import BackendPlan
from edgeship.runtime.tensors import TensorSpec, check_inputs

# onnxruntime's element type strings -> numpy dtypes (the ones image and tensor models use).
_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int16)": np.int16,
    "tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_,
}


def _spec(arg: Any) -> TensorSpec:
    if arg.type not in _DTYPES:
        raise RuntimeBackendError(f"model input/output {arg.name!r} has type {arg.type}, which the runtime cannot feed",
                                  hint="export the model with numeric tensor inputs")
    return TensorSpec(arg.name, tuple(d if isinstance(d, int) else None for d in arg.shape), np.dtype(_DTYPES[arg.type]))


def _followed(plan: BackendPlan, used: list[str]) -> BackendPlan:
    """The plan as onnxruntime followed it: it drops a provider that cannot start (it only warns)."""
    dropped = [p for p in plan.providers if p not in used]
    if not dropped:
        return plan
    return replace(plan, providers=tuple(used),
                   fallback=f"onnxruntime could not start {', '.join(dropped)}: running on {', '.join(used)}")


class OnnxBackend:
    """One ONNX session. onnxruntime sessions are safe to ``run`` from many threads at once."""

    def __init__(self, component: Component, session: Any, image: imaging.ImageSpec | None,
                 errors: tuple[type[Exception], ...], memory: int, plan: BackendPlan) -> None:
        self.component = component
        self._memory = memory
        self.plan = plan
        self._session = session
        self._errors = errors
        self.inputs = [_spec(a) for a in session.get_inputs()]
        self.outputs = [_spec(a) for a in session.get_outputs()]
        self.image = image
        if image is not None:
            self._image_input = self._named(self.inputs, image.input, "input")
            self._image_output = self._named(self.outputs, image.output, "output")

    @classmethod
    def load(cls, prepared: Prepared, options: BackendOptions) -> OnnxBackend:
        component, path = prepared.component, prepared.path
        ort = require(component, "onnxruntime", "onnxruntime", "runtime")
        ort_errors = ort.capi.onnxruntime_pybind11_state
        try:
            image = imaging.ImageSpec.model_validate(component.meta["image"]) if "image" in component.meta else None
        except ValueError as exc:
            raise RuntimeBackendError(f"component {component.name} has an invalid meta.image: {exc}",
                                      hint="fix the image section of the component's meta and build a new release") from exc
        so = ort.SessionOptions()
        if options.threads:
            so.intra_op_num_threads = options.threads
        for key, value in prepared.plan.session_config.items():
            so.add_session_config_entry(key, value)
        # onnxruntime's exceptions share no base class below Exception.
        errors = (ort_errors.Fail, ort_errors.InvalidArgument, ort_errors.InvalidGraph, ort_errors.InvalidProtobuf,
                  ort_errors.NoSuchFile, ort_errors.NotImplemented, ort_errors.RuntimeException)
        try:
            plan = prepared.plan
            session = ort.InferenceSession(str(path), so, providers=[(p, dict(plan.provider_options.get(p, {})))
                                                                     for p in plan.providers])
        except errors as exc:
            raise RuntimeBackendError(f"onnxruntime cannot load component {component.name}: {exc}",
                                      hint="check the file, its opset and that this onnxruntime supports its operators") from exc
        return cls(component, session, image, errors, prepared.memory, _followed(prepared.plan, session.get_providers()))

    def _named(self, specs: list[TensorSpec], name: str | None, what: str) -> TensorSpec:
        for s in specs:
            if name is None or s.name == name:
                return s
        raise RuntimeBackendError(f"component {self.component.name}: meta.image names {what} {name!r}, "
                                  f"the model has {[s.name for s in specs]}", hint="fix meta.image and rebuild the release")

    def warmup(self) -> None:
        self.run({s.name: s.example() for s in self.inputs})

    def memory_bytes(self) -> int:
        return self._memory

    def close(self) -> None:
        # onnxruntime frees the session with its last reference; drop ours now.
        self._session = None

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = check_inputs(self.inputs, inputs)
        try:
            values = self._session.run(None, feed)
        except self._errors as exc:
            raise UsageError(f"the model rejected the input: {str(exc).splitlines()[0]}",
                             hint="GET /v1/models lists the inputs it takes") from exc
        return {s.name: v for s, v in zip(self.outputs, values, strict=True)}

    def run_image(self, data: bytes) -> Image.Image:
        """Decode an uploaded PNG/JPEG, run the model, return the output as a PIL image."""
        if self.image is None:
            raise UsageError(f"model {self.component.name} does not take images",
                             hint="send named tensors as JSON or .npy; image upload needs meta.image in the manifest")
        picture = imaging.decode(data, self.image)
        tensor = imaging.to_tensor(picture, self.image, self._image_input.shape)
        extra = {s.name: s.example() for s in self.inputs if s.name != self._image_input.name}
        out = self.run({self._image_input.name: tensor, **extra})[self._image_output.name]
        return imaging.to_image(out, self.image, picture.size)

    def describe(self) -> dict[str, Any]:
        return {"inputs": [s.describe() for s in self.inputs], "outputs": [s.describe() for s in self.outputs],
                "image": self.image is not None, "plan": self.plan.to_json()}
