"""An image model pushed with the CLI, uploaded to a real server, installed by a real agent and
served by the runtime: the README's `curl -F image=@photo.jpg -F format=png` answers a PNG."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
from PIL import Image

from edgeship.loopback import CLI
from edgeship.runtime import BackgroundServer
from edgeship.samples.imagemodel import write_tiny_denoiser
from tests.server.conftest import Fleet, cli, new_fleet  # noqa: F401 - fixture

from .conftest import config_for
from .harness import Device


def test_an_image_model_pushed_with_the_cli_takes_a_jpeg_and_answers_a_png(new_fleet: Callable[..., Fleet], tmp_path: Path) -> None:  # noqa: F811
    f = new_fleet()
    model = write_tiny_denoiser(tmp_path / "denoiser.onnx")
    # No --server and no --image-io: the workspace names the server, the model's shapes say it is image-to-image.
    assert cli("release", "push", "vision", "-v", "1.0.0", "-c", f"denoiser:model/onnx={model}", "-w", f.workspace) == 0
    assert cli("assign", "vision@1.0.0", "--tag", "cam=door", "-w", f.workspace) == 0
    token = f.enroll_token(tags={"cam": "door"}, uses=1)["token"]
    device = Device(tmp_path / "device")
    device.root.mkdir()
    root = f.workspace / "repository" / "metadata" / "1.root.json"
    with BackgroundServer(config_for(device)) as runtime:
        agent = subprocess.run([*CLI, "agent", "run", "--once", "--data-dir", str(device.root), "--server", f.url,
                                "--root", str(root), "--enroll-token", token, "--runtime", runtime.url],
                               capture_output=True, text=True, timeout=120)
        assert agent.returncode == 0, agent.stderr
        rng = np.random.default_rng(3)
        photo = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "RGB").save(photo, "JPEG", quality=95)
        reply = httpx.post(f"{runtime.url}/v1/predict", data={"model": "denoiser", "format": "png"},
                           files={"image": ("photo.jpg", photo.getvalue(), "image/jpeg")}, timeout=60)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "image/png"
    out = np.asarray(Image.open(io.BytesIO(reply.content)))
    # What the model itself makes of the decoded JPEG's pixels.
    pixels = np.asarray(Image.open(photo).convert("RGB"), np.float32).transpose(2, 0, 1)[None] / 255
    blurred = ort.InferenceSession(str(model)).run(None, {"image": pixels})[0][0].transpose(1, 2, 0)
    expected = np.clip(np.rint(blurred * 255), 0, 255).astype(int)
    assert out.shape == (32, 32, 3) and np.abs(out.astype(int) - expected).max() <= 1
