"""Image in, image out: the pre- and post-processing an image-to-image ONNX model declares.

A component opts in with ``meta["image"]`` in the manifest (``release push`` records it for
image-to-image models, see ``edgeship.release.imageio``), e.g.::

    {"input": "image", "output": "denoised", "layout": "NCHW", "size": [32, 32],
     "scale": 0.00392156862745098, "mean": [0, 0, 0], "std": [1, 1, 1]}

Pre-processing: decode, convert to ``mode``, resize to ``size`` (height, width), scale
pixel values, normalize per channel, lay out as ``layout`` with a batch axis. Post-
processing does the inverse on the output and, with ``restore_size``, resizes back to
the upload's size.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgeship.errors import UsageError
from edgeship.release.imageio import ImageSpec

IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")  # PNG, JPEG
FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg")}


def is_image(data: bytes) -> bool:
    return data.startswith(IMAGE_MAGIC)


def decode(data: bytes, spec: ImageSpec) -> Image.Image:
    if not is_image(data):
        raise UsageError("the upload is not a PNG or JPEG image", hint="send a PNG or JPEG file (or an .npy tensor)")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise UsageError(f"the image cannot be decoded: {exc}", hint="send an intact PNG or JPEG file") from exc
    return image.convert(spec.mode)


def to_tensor(image: Image.Image, spec: ImageSpec, model_shape: tuple[int | None, ...]) -> np.ndarray:
    """The model input for ``image``: resized, normalized, in ``spec.layout`` with a batch axis."""
    h_axis, w_axis = (2, 3) if spec.layout == "NCHW" else (1, 2)
    size = spec.size or (model_shape[h_axis], model_shape[w_axis])
    if size[0] is not None and size[1] is not None and (image.height, image.width) != tuple(size):
        image = image.resize((int(size[1]), int(size[0])), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, np.float32)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    hwc = (pixels * spec.scale - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    chw = hwc.transpose(2, 0, 1) if spec.layout == "NCHW" else hwc
    return chw[None, ...]


def to_image(tensor: np.ndarray, spec: ImageSpec, original_size: tuple[int, int]) -> Image.Image:
    """The inverse of :func:`to_tensor` for a model output; ``original_size`` is (width, height)."""
    array = np.asarray(tensor, np.float32)
    if array.ndim == 4:
        if array.shape[0] != 1:
            raise UsageError(f"the model returned a batch of {array.shape[0]} images; image output needs one")
        array = array[0]
    if array.ndim != 3:
        raise UsageError(f"the model output has shape {list(tensor.shape)}, which is not an image",
                         hint="use tensor predict (JSON or .npy) for this model")
    hwc = array.transpose(1, 2, 0) if spec.layout == "NCHW" else array
    pixels = (hwc * np.asarray(spec.std, np.float32) + np.asarray(spec.mean, np.float32)) / spec.scale
    pixels = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels, "L" if pixels.shape[2] == 1 else "RGB")
    if spec.restore_size and image.size != original_size:
        image = image.resize(original_size, Image.Resampling.BILINEAR)
    return image


def encode(image: Image.Image, fmt: str) -> tuple[bytes, str]:
    """(bytes, media type) of ``image`` in ``fmt`` ('png' or 'jpeg')."""
    if fmt not in FORMATS:
        raise UsageError(f"image format {fmt!r} is not offered", hint=f"ask for one of {', '.join(FORMATS)}")
    pil_format, media_type = FORMATS[fmt]
    out = io.BytesIO()
    image.save(out, pil_format)
    return out.getvalue(), media_type
