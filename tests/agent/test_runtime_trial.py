"""The trial through the device's runtime: the agent swaps it to the new release, runs the
release's inference checks there, and on failure rolls both the files and the runtime back."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from edgeship.release.manifest import HealthSuite
from edgeship.runtime.config import RuntimeConfig
from edgeship.runtime.server import BackgroundServer
from tests.agent.harness import Device, Releases, Server, assert_consistent

ANSWERS = {"type": "llm", "prompt": "Hello", "max_tokens": 4}
# The tiny model babbles bytes: this pattern never matches, so the suite must fail.
NEVER = {**ANSWERS, "regex": "^this answer never comes$"}


def serving(runtime: BackgroundServer) -> set[str]:
    return {m["release_id"] for m in httpx.get(f"{runtime.url}/v1/models").json()["data"]}


@pytest.mark.slow
def test_inference_checks_decide_the_trial_and_the_runtime_follows_the_rollback(releases: Releases, tmp_path: Path) -> None:
    good = releases.publish("1.0.0", health=HealthSuite(checks=(ANSWERS,)))
    bad = releases.publish("2.0.0", health=HealthSuite(checks=(NEVER,)))
    server = Server.create(releases.ws, tmp_path / "server")
    server.start()
    try:
        device = Device(server, tmp_path / "device", releases.root(), "dev=rt", server.enroll_token({"dev": "rt"}))
        device.data.mkdir()
        with BackgroundServer(RuntimeConfig(data_dir=device.data, n_ctx=128)) as runtime:
            server.assign("llm@1.0.0", tag=device.tag)
            r = device.run("--runtime", runtime.url)
            assert r.returncode == 0, r.stderr
            assert device.version() == "1.0.0" and serving(runtime) == {good.release_id}
            # The trial's event says where the runtime runs the model: this machine has no accelerator.
            [plan] = [e["data"]["plan"] for e in server.events(device.device_id) if e["type"] == "health"]
            assert plan["model"]["n_gpu_layers"] == 0 and plan["model"]["reason"]

            server.assign("llm@2.0.0", tag=device.tag)
            r = device.run("--runtime", runtime.url)
            assert device.version() == "1.0.0", r.stderr
            assert serving(runtime) == {good.release_id}, "the runtime must serve the release the device rolled back to"
            [rolled] = [e for e in server.events(device.device_id) if e["state"] == "rolled_back"]
            assert rolled["release"] == "llm@2.0.0" and "inference checks failed" in rolled["data"]["reason"]
            assert bad.release_id not in serving(runtime)
        assert_consistent(device, {"1.0.0"})
    finally:
        server.stop()
