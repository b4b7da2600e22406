"""A federated round with real agents: real fine-tuning on local text, real uploads, and the
averaged candidate signed offline as an ordinary release that a staged rollout ships."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from edgeship.cli.main import run
from edgeship.samples.llama import write_tiny_llama
from edgeship.workspace import Workspace
from tests.agent.harness import Device, Releases, Server
from tests.learn.conftest import write_corpus
from tests.learn.fedkit import RecordingProxy

CANARY = "zq-federated-canary-4417"  # in every device's training text: it must never reach the server


def _corpus(directory: Path) -> Path:
    write_corpus(directory, 10)
    with (directory / "notes.jsonl").open("a") as f:
        for i in range(6):
            f.write(json.dumps({"text": f"private note {i}: {CANARY} sits in the device's own text and stays there."}) + "\n")
    return directory


def _wait(predicate, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_a_round_with_real_agents_ends_in_a_signed_release_a_staged_rollout_ships(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", passphrase=None)
    rel = Releases(ws, write_tiny_llama(tmp_path / "base.gguf"), tmp_path / "src")
    rel.publish("1.0.0")
    server = Server.create(ws, tmp_path / "server")
    server.settings = server.settings.model_copy(update={"rollout_check_s": 0.3})
    server.start()
    proxy = RecordingProxy(server.settings.port)
    try:
        devices = []
        for name in ("a", "b"):
            d = Device(server, tmp_path / name, rel.root(), "group=fed", server.enroll_token({"group": "fed"}), via=proxy.url)
            devices.append(d)
        server.assign("llm@1.0.0", tag="group=fed")
        for d in devices:
            r = d.run()
            assert r.returncode == 0 and d.version() == "1.0.0", r.stderr

        conn = ("--server", server.url, "--token", server.admin_token)
        assert run(["federated", "start", "llm@1.0.0", "--target", "group=fed", "--min-participants", "2",
                    "--local-steps", "1", "--max-norm", "1e6", "--json", *conn]) == 0
        runs = server.admin("GET", "/v1/admin/federated")
        run_id = runs[0]["id"]
        logs = []
        for d in devices:
            r = d.run("--learn-data", str(_corpus(tmp_path / f"data-{d.data.name}")), timeout=600)
            assert r.returncode == 0, r.stderr
            logs.append(r.stderr)
        status = server.admin("GET", f"/v1/admin/federated/{run_id}")
        assert len(status["rounds"]) == 1, logs
        (entry,) = status["rounds"]
        assert entry["used"] and entry["accepted"] == 2, (entry, [e["data"] for d in devices for e in server.events(d.device_id) if e["type"] == "federated"])
        assert entry["loss_after"] < entry["loss_before"]  # real training on the devices' text
        assert all(not (d.data / "learn").exists() or not any((d.data / "learn").iterdir()) for d in devices)

        # The server never received a byte of the devices' text.
        assert len(proxy.sent) > sum(entry["update_bytes"])  # the relay saw the uploads themselves
        assert CANARY.encode() not in bytes(proxy.sent)
        assert not [p for p in (tmp_path / "server").rglob("*") if p.is_file() and CANARY.encode() in p.read_bytes()]

        # The operator pulls the candidate, signs it offline as an ordinary release, rolls it out in stages.
        candidate = tmp_path / "candidate.gguf"
        assert run(["federated", "pull", run_id, "-o", str(candidate), *conn]) == 0
        assert run(["release", "push", "llm", "-v", "2.0.0", "-c", f"model:model/gguf={candidate}", *conn, "-w", str(ws.root)]) == 0
        rollout = server.admin("POST", "/v1/admin/rollouts", {"release": "llm@2.0.0", "target": "group=fed", "pilot": "",
                                                              "stages": "50,100", "bake": "1s"})
        def shipped() -> bool:
            for d in devices:
                assert d.run().returncode == 0
            return all(d.version() == "2.0.0" for d in devices)

        _wait(shipped, "the staged rollout did not ship the federated release to both devices", timeout=120)
        assert server.admin("GET", f"/v1/admin/rollouts/{rollout['id']}")["status"] in ("completed", "baking", "rolling")
        installed = devices[0].store
        model = next(c for c in installed.manifest(installed.link("current")).components if c.name == "model")
        assert model.size == candidate.stat().st_size
    finally:
        proxy.close()
        server.stop()
