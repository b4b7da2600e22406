"""/v1/predict: named tensors as JSON and .npy, images in and out, and clear 4xx for bad input."""

from __future__ import annotations

import io

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from edgeship.release.manifest import ComponentKind
from edgeship.runtime import BackgroundServer

from .conftest import Models, config_for, png_bytes
from .harness import Device


def reference(models: Models, x: np.ndarray) -> np.ndarray:
    """What onnxruntime itself says, for comparison."""
    return ort.InferenceSession(str(models.denoiser)).run(None, {"image": x})[0]


def npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def test_json_tensors(served: tuple[BackgroundServer, str], models: Models) -> None:
    server, release_id = served
    x = np.random.default_rng(0).random((1, 3, 32, 32), np.float32)
    reply = httpx.post(f"{server.url}/v1/predict", json={"model": "denoiser", "inputs": {"image": x.tolist()}})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["release_id"] == release_id
    out = body["outputs"]["denoised"]
    assert out["shape"] == [1, 3, 32, 32] and out["dtype"] == "float32"
    np.testing.assert_allclose(np.asarray(out["data"], np.float32), reference(models, x), rtol=1e-5, atol=1e-6)


def test_npy_upload_and_model_inferred(served: tuple[BackgroundServer, str], models: Models) -> None:
    server, _ = served
    x = np.random.default_rng(1).random((1, 3, 32, 32), np.float32)
    # No model named: the release has one tensor model, so it is that one.
    reply = httpx.post(f"{server.url}/v1/predict", files={"image": ("x.npy", npy(x), "application/octet-stream")})
    assert reply.status_code == 200, reply.text
    np.testing.assert_allclose(np.asarray(reply.json()["outputs"]["denoised"]["data"], np.float32),
                               reference(models, x), rtol=1e-5, atol=1e-6)


def test_image_in_image_out(served: tuple[BackgroundServer, str], models: Models) -> None:
    server, release_id = served
    flat = np.full((32, 32, 3), 90, np.uint8)
    flat[8:24, 8:24] = 200  # a square: the blur softens its edges, leaves flat areas alone
    reply = httpx.post(f"{server.url}/v1/predict", data={"model": "denoiser"},
                       files={"image": ("in.png", png_bytes(flat), "image/png")})
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "image/png" and reply.headers["x-edgeship-release"] == release_id
    out = np.asarray(Image.open(io.BytesIO(reply.content)))
    x = flat.transpose(2, 0, 1)[None].astype(np.float32) / 255
    expected = np.clip(np.rint(reference(models, x)[0].transpose(1, 2, 0) * 255), 0, 255)
    assert out.shape == (32, 32, 3)
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1
    assert out[16, 16, 0] == 200 and 90 < out[8, 16, 0] < 200  # inside untouched, edge blurred


def test_image_resized_to_the_model_and_back_as_jpeg(served: tuple[BackgroundServer, str], models: Models) -> None:
    server, _ = served
    reply = httpx.post(f"{server.url}/v1/predict", data={"format": "jpeg"},
                       files={"image": ("photo.png", models.photo.read_bytes(), "image/png")})
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(reply.content)).size == (48, 40)


@pytest.mark.parametrize("request_kwargs, status, message", [
    ({"json": {"model": "denoiser", "inputs": {"image": [[1.0, 2.0]]}}}, 400, "expects [1x3x32x32]"),
    ({"json": {"model": "denoiser", "inputs": {"pixels": [[1.0]]}}}, 400, "missing ['image']; unknown ['pixels']"),
    ({"json": {"model": "denoiser", "inputs": {"image": [[1.0], [1.0, 2.0]]}}}, 400, "not a rectangular array"),
    ({"json": {"model": "denoiser", "inputs": {}}}, 400, "invalid predict request"),
    ({"json": {"model": "nope", "inputs": {"image": [1]}}}, 404, "no tensor model 'nope'"),
    ({"json": {"model": "llm", "inputs": {"image": [1]}}}, 404, "no tensor model 'llm'"),
    ({"files": {"image": ("a.txt", b"hello, not an image", "text/plain")}}, 400, "neither a PNG/JPEG image nor an .npy"),
    ({"files": {"image": ("a.png", b"\x89PNG\r\n\x1a\nbroken", "image/png")}}, 400, "cannot be decoded"),
    ({"files": {"image": ("a.npy", b"\x93NUMPYgarbage", "application/octet-stream")}}, 400, "not a readable .npy"),
    ({"content": b"image=1", "headers": {"content-type": "application/x-www-form-urlencoded"}}, 400, "not accepted"),
])
def test_bad_input_is_a_clear_4xx(served: tuple[BackgroundServer, str], request_kwargs: dict, status: int,
                                  message: str) -> None:
    reply = httpx.post(f"{served[0].url}/v1/predict", **request_kwargs)
    assert reply.status_code == status, reply.text
    assert message in reply.json()["error"]["message"]


def test_oversized_body_is_413(device: Device, models: Models) -> None:
    device.install("1.0.0", {"denoiser": (ComponentKind.ONNX, models.denoiser)})
    with BackgroundServer(config_for(device, max_body_bytes=64 * 1024)) as server:
        declared = httpx.post(f"{server.url}/v1/predict", content=b"x" * 100_000, headers={"content-type": "application/json"})
        assert declared.status_code == 413
        assert "larger than 65536 bytes" in declared.json()["error"]["message"]

        def chunks():  # no Content-Length: the cap must hold while the body streams in
            for _ in range(100):
                yield b"x" * 1024

        streamed = httpx.post(f"{server.url}/v1/predict", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_image_upload_to_a_model_without_image_meta(device: Device, models: Models) -> None:
    device.install("1.0.0", {"denoiser": (ComponentKind.ONNX, models.denoiser)})
    with BackgroundServer(config_for(device)) as server:
        reply = httpx.post(f"{server.url}/v1/predict", files={"image": ("in.png", models.photo.read_bytes(), "image/png")})
        assert reply.status_code == 400
        assert "does not take images" in reply.json()["error"]["message"]
