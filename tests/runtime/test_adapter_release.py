"""Adapters pushed with the CLI, installed by a real agent, attached by the runtime; the
adapter's update travels as a delta while the base stays as it is."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx

from edgeship.loopback import CLI
from edgeship.runtime import BackgroundServer
from edgeship.samples.lora import retrain_tensor, write_lora
from tests.server.conftest import Fleet, cli, new_fleet  # noqa: F401 - fixture

from .conftest import Models, config_for
from .harness import PROMPT, Device


def test_an_adapter_update_arrives_as_a_delta_and_attaches_to_the_running_base(
        new_fleet: Callable[..., Fleet], models: Models, tmp_path: Path) -> None:  # noqa: F811
    f = new_fleet()
    base = models.llama_a
    for v in ("v1", "v2"):
        (tmp_path / v).mkdir()
    first = write_lora(tmp_path / "v1" / "tone.gguf", base, std=0.5)
    # The update retrains one layer's value projection: the rest of the file is unchanged.
    tone = [first, retrain_tensor(first, tmp_path / "v2" / "tone.gguf", "blk.1.attn_v.weight.lora_b", std=0.5)]
    device = Device(tmp_path / "device")
    device.root.mkdir()
    root = f.workspace / "repository" / "metadata" / "1.root.json"
    token = f.enroll_token(tags={"site": "shop"}, uses=1)["token"]
    with BackgroundServer(config_for(device)) as runtime:
        answers = []
        for version, adapter in (("1.0.0", tone[0]), ("1.1.0", tone[1])):
            assert cli("release", "push", "assistant", "-v", version, "-c", f"llm:model/gguf={base}",
                       "-c", f"tone:adapter/lora={adapter}", "-w", f.workspace) == 0
            assert cli("assign", f"assistant@{version}", "--tag", "site=shop", "-w", f.workspace) == 0
            agent = subprocess.run([*CLI, "agent", "run", "--once", "--data-dir", str(device.root), "--server", f.url,
                                    "--root", str(root), "--enroll-token", token, "--runtime", runtime.url],
                                   capture_output=True, text=True, timeout=120)
            assert agent.returncode == 0, agent.stderr
            reply = httpx.post(f"{runtime.url}/v1/completions", json={**PROMPT, "model": "llm+tone", "max_tokens": 6})
            assert reply.status_code == 200, reply.text
            answers.append(reply.json()["choices"][0]["text"])
        plain = httpx.post(f"{runtime.url}/v1/completions", json={**PROMPT, "max_tokens": 6}).json()["choices"][0]["text"]
    assert len({*answers, plain}) == 3, "each version's adapter is the one attached"
    events = f.admin.get("/v1/admin/events", params={"limit": 500}).json()["events"]
    downloads = [e["data"] for e in events if e["type"] == "download"]
    assert downloads[-1]["by_delta"] == ["tone"], downloads[-1]
    assert downloads[-1]["bytes_fetched"] < tone[1].stat().st_size / 2, downloads[-1]
