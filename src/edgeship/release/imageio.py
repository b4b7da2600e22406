"""Image I/O of an ONNX component: the ``meta["image"]`` a release records, so the runtime's
``/v1/predict`` takes a PNG/JPEG and answers one.

``release push`` recognises image-to-image models from the input/output shapes that header
inspection found (one float input of rank 4 with 1 or 3 channels, NCHW or NHWC, and an
output of the same shape) and records their image I/O; ``--image-io`` sets or overrides it:

    [NAME:]key=value,...   keys: input, output, layout (NCHW|NHWC), mode (RGB|L), size (HxW),
                           scale (e.g. 1/255), mean and std (one value, or one per channel,
                           joined by '|'), restore_size (yes|no)
    [NAME:]off             no image I/O, even for a model that looks like one
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgeship.errors import UsageError
from edgeship.release.manifest import first_error

_FLOATS = {"FLOAT", "FLOAT16", "DOUBLE"}  # what the runtime's normalized float32 pixels cast to
_CHANNELS = {1: "L", 3: "RGB"}
_KEYS = ("input", "output", "layout", "mode", "size", "scale", "mean", "std", "restore_size")


class ImageSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    input: str | None = Field(default=None, description="model input fed the image; None: the first")
    output: str | None = Field(default=None, description="model output read as the image; None: the first")
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    mode: Literal["RGB", "L"] = "RGB"
    size: tuple[int, int] | None = Field(default=None, description="(height, width); None: the model's input shape")
    scale: float = Field(default=1 / 255, gt=0, description="pixel value (0-255) times this, before mean/std")
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    restore_size: bool = True

    @model_validator(mode="after")
    def _channels(self) -> ImageSpec:
        channels = 3 if self.mode == "RGB" else 1
        for name in ("mean", "std"):
            if len(getattr(self, name)) not in (1, channels):
                raise ValueError(f"{name} needs 1 or {channels} values for mode {self.mode}")
        if any(s == 0 for s in self.std):
            raise ValueError("std values must not be 0")
        return self


@dataclass(frozen=True)
class ImageIO:
    """One ``--image-io`` option: the component it names (None: the release's only ONNX one)
    and the fields it sets, or ``off``."""

    component: str | None
    fields: Mapping[str, Any]
    off: bool = False

    @classmethod
    def parse(cls, text: str) -> ImageIO:
        head, sep, rest = text.partition(":")
        name, body = (head, rest) if sep and "=" not in head else (None, text)
        if body.strip() == "off":
            return cls(name, {}, off=True)
        fields: dict[str, Any] = {}
        for item in body.split(","):
            key, eq, value = (part.strip() for part in item.partition("="))
            if not eq or not value:
                raise UsageError(f"image I/O {item!r} not understood", hint="write [NAME:]key=value,..., e.g. denoiser:mode=L,size=256x256, or NAME:off")
            if key not in _KEYS:
                raise UsageError(f"unknown image I/O key {key!r}", hint=f"known: {', '.join(_KEYS)}")
            fields[key] = _value(key, value)
        return cls(name, fields)


def _value(key: str, text: str) -> Any:
    try:
        if key == "size":
            height, _, width = text.lower().partition("x")
            return (int(height), int(width))
        if key == "scale":
            top, _, bottom = text.partition("/")
            return float(top) / float(bottom) if bottom else float(top)
        if key in ("mean", "std"):
            return tuple(float(v) for v in text.split("|"))
        if key == "restore_size":
            return {"yes": True, "true": True, "no": False, "false": False}[text.lower()]
    except (ValueError, KeyError, ZeroDivisionError) as exc:
        examples = {"size": "256x256", "scale": "1/255", "mean": "0.485|0.456|0.406", "std": "0.229|0.224|0.225", "restore_size": "no"}
        raise UsageError(f"image I/O {key}={text!r} not understood", hint=f"e.g. {key}={examples[key]}") from exc
    return text.upper() if key in ("layout", "mode") else text


def detect(onnx_meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """The image I/O of an image-to-image model (see the module doc), or None for any other."""
    inputs, outputs = onnx_meta.get("inputs", []), onnx_meta.get("outputs", [])
    if len(inputs) != 1:
        return None  # other inputs would have to be made up for every picture
    src = inputs[0]
    layout = _layout(src["shape"]) if src["elem_type"] in _FLOATS else None
    if layout is None:
        return None
    out = next((o for o in outputs if o["elem_type"] in _FLOATS and _same_shape(o["shape"], src["shape"])), None)
    if out is None:
        return None
    channels = src["shape"][1] if layout == "NCHW" else src["shape"][3]
    return {"input": src["name"], "output": out["name"], "layout": layout, "mode": _CHANNELS[channels]}


def _layout(shape: list[Any]) -> str | None:
    if len(shape) != 4:
        return None
    # NCHW is ONNX's convention, so it wins when both axes could hold the channels.
    if shape[1] in _CHANNELS:
        return "NCHW"
    return "NHWC" if shape[3] in _CHANNELS else None


def _same_shape(a: list[Any], b: list[Any]) -> bool:
    # A named (symbolic) dimension may differ in name between input and output; fixed ones must match.
    return len(a) == len(b) and all(x == y or not isinstance(x, int) or not isinstance(y, int) for x, y in zip(a, b, strict=True))


def resolve(component: str, onnx_meta: Mapping[str, Any], given: ImageIO | None) -> dict[str, Any] | None:
    """The ``meta["image"]`` to record: detected, overridden by ``given``, checked against the model."""
    if given is not None and given.off:
        return None
    fields = {**(detect(onnx_meta) or {}), **(given.fields if given else {})}
    if not fields:
        return None
    try:
        spec = ImageSpec(**fields)
    except ValueError as exc:
        raise UsageError(f"image I/O of component {component} is not valid: {first_error(exc)}", hint="fix --image-io") from exc
    for what, name in (("inputs", spec.input), ("outputs", spec.output)):
        names = [v["name"] for v in onnx_meta.get(what, [])]
        if name is not None and name not in names:
            raise UsageError(f"image I/O of component {component} names {what[:-1]} {name!r}; the model's {what}: {', '.join(names)}",
                             hint="fix --image-io")
    return spec.model_dump(mode="json")

