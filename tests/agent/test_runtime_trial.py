"""The trial through the device's runtime: the agent swaps it to the new release, runs the
release's inference checks there, and on failure rolls both the files and the runtime back."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest

from edgeship.release.bundle import ComponentSpec
from edgeship.release.manifest import ComponentKind, HealthSuite
from edgeship.runtime.config import RuntimeConfig
from edgeship.runtime.fallbacks import FILE as FALLBACKS
from edgeship.runtime.plan import CPU_PROVIDER
from edgeship.runtime.release import PreparedRelease
from edgeship.runtime.server import BackgroundServer
from edgeship.runtime.service import Runtime
from tests.agent.harness import Device, Releases, Server, assert_consistent
from tests.helpers import gelu

ANSWERS = {"type": "llm", "prompt": "Hello", "max_tokens": 4}
# The tiny model babbles bytes: this pattern never matches, so the suite must fail.
NEVER = {**ANSWERS, "regex": "^this answer never comes$"}


def serving(runtime: BackgroundServer) -> set[str]:
    return {m["release_id"] for m in httpx.get(f"{runtime.url}/v1/models").json()["data"]}


def plans(runtime: BackgroundServer) -> dict[str, dict]:
    return {m["id"]: m["plan"] for m in httpx.get(f"{runtime.url}/v1/models").json()["data"]}


class AcceleratedRuntime(Runtime):
    """The real runtime, whose plan puts the `gelu` model on the stand-in accelerator of
    tests.helpers.gelu (a real provider of this onnxruntime and the CUDA plan's real session
    setting): only the plan table is stood in for, this machine having no accelerator."""

    def prepare(self, directory: Path, beside: PreparedRelease | None = None) -> PreparedRelease:
        prepared = super().prepare(directory, beside)
        return replace(prepared, components=tuple(replace(p, plan=gelu.ACCELERATED) if p.component.name == "gelu" else p
                                                  for p in prepared.components))


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


@pytest.mark.slow
def test_a_model_its_accelerator_fails_runs_on_the_cpu_and_the_trial_goes_on(releases: Releases, tmp_path: Path) -> None:
    probe, exact = gelu.write_probe(tmp_path)
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros(gelu.SHAPE, np.float32))  # no plan answers this: the trial must roll back
    model = gelu.write_gelu(tmp_path / "gelu.onnx")
    files = (ComponentSpec(ComponentKind.ONNX, model, "gelu"), ComponentSpec(ComponentKind.FILE, probe, "probe"))
    good = releases.publish("1.0.0", health=HealthSuite(checks=(gelu.check(),)),
                            extra=(*files, ComponentSpec(ComponentKind.FILE, exact, "exact")))
    bad = releases.publish("2.0.0", health=HealthSuite(checks=(gelu.check(),)),
                           extra=(*files, ComponentSpec(ComponentKind.FILE, wrong, "exact")))
    server = Server.create(releases.ws, tmp_path / "server")
    server.start()
    try:
        device = Device(server, tmp_path / "device", releases.root(), "dev=rt", server.enroll_token({"dev": "rt"}))
        device.data.mkdir()
        config = RuntimeConfig(data_dir=device.data, n_ctx=128, threads=1)
        with BackgroundServer(config, runtime=AcceleratedRuntime(config)) as runtime:
            server.assign("llm@1.0.0", tag=device.tag)
            r = device.run("--runtime", runtime.url)
            assert r.returncode == 0, r.stderr
            assert device.version() == "1.0.0" and serving(runtime) == {good.release_id}
            # /v1/models and the trial's event: the model runs on the CPU, and why.
            plan = plans(runtime)["gelu"]
            assert plan["providers"] == [CPU_PROVIDER] and plan["session_config"] == {}
            assert "AzureExecutionProvider" in plan["fallback"] and "PSNR" in plan["fallback"]
            [event] = [e["data"]["plan"] for e in server.events(device.device_id) if e["type"] == "health"]
            assert event["gelu"]["fallback"] == plan["fallback"] and event["model"]["fallback"] is None

            server.assign("llm@2.0.0", tag=device.tag)
            device.run("--runtime", runtime.url)
            assert device.version() == "1.0.0"
            [rolled] = [e for e in server.events(device.device_id) if e["state"] == "rolled_back"]
            assert "inference checks failed on the CPU too" in rolled["data"]["reason"]
            # Back on 1.0.0, still with the model on the CPU, as its trial passed.
            assert serving(runtime) == {good.release_id} and plans(runtime)["gelu"]["fallback"] == plan["fallback"]
        assert good.release_id in json.loads((device.data / FALLBACKS).read_text())

        # A restarted runtime serves the release the way its trial passed, not on the accelerator that failed it.
        with BackgroundServer(config, runtime=AcceleratedRuntime(config)) as runtime:
            assert plans(runtime)["gelu"]["fallback"] == plan["fallback"]
        assert_consistent(device, {"1.0.0"})
    finally:
        server.stop()
