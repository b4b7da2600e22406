"""Federated rounds on a real server: real deltas of real tiny GGUF models, uploaded over HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from edgeship.cli.main import run
from edgeship.cli.output import human_size
from edgeship.learn.weights import tensor_delta
from edgeship.samples.llama import TinyLlama, write_tiny_llama
from edgeship.store.digest import hash_file
from edgeship.workspace import Workspace
from tests.agent.harness import Releases, Server
from tests.ui.conftest import login
from tests.learn.fedkit import FedDevice, enroll, perturbed, update_file

SPEC = TinyLlama()


@dataclass
class Fed:
    server: Server
    base: Path
    tmp: Path
    devices: list[FedDevice]

    def start(self, **body: object) -> dict:
        return self.server.admin("POST", "/v1/admin/federated", {"release": "llm@1.0.0", "target": "group=fed", **body})

    def status(self, run_id: str) -> dict:
        return self.server.admin("GET", f"/v1/admin/federated/{run_id}")

    def update(self, name: str, **kw: object) -> Path:
        tuned = perturbed(SPEC, self.tmp / f"{name}.gguf", **kw)  # type: ignore[arg-type]
        return update_file(self.base, tuned, self.tmp / f"{name}.patch")


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    tmp = tmp_path_factory.mktemp("fed")
    ws = Workspace.init(tmp / "ws", passphrase=None)
    base = write_tiny_llama(tmp / "base.gguf", SPEC)
    Releases(ws, base, tmp / "src").publish("1.0.0")
    server = Server.create(ws, tmp / "data")
    server.start()
    try:
        devices = [enroll(server.url, server.enroll_token({"group": "fed"})) for _ in range(3)]
        yield Fed(server, base, tmp, devices)
    finally:
        server.stop()


def test_a_round_averages_updates_weighted_by_samples(fed: Fed) -> None:
    run = fed.start(min_participants=3, rounds=1)
    assert sorted(run["cohort"]) == sorted(d.id for d in fed.devices)
    samples = [10, 20, 70]
    patches = [fed.update(f"ok{i}", seed=i) for i in range(3)]
    for d, patch, n in zip(fed.devices, patches, samples):
        task = d.task()
        assert task is not None and task["run"] == run["id"] and task["base_digest"] == run["base_digest"]
        assert task["upload"] == f"/v1/devices/{d.id}/federated/{run['id']}/1"
        r = d.upload(run["id"], patch, n, json.dumps({"loss_before": 3.0, "loss_after": 2.5}))
        assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
        assert d.task() is None  # answered: nothing more to do this run
    status = fed.status(run["id"])
    assert status["status"] == "finished"
    (entry,) = status["rounds"]
    assert entry["used"] and entry["accepted"] == 3 and entry["samples"] == 100 and entry["loss_after"] == 2.5
    assert entry["update_bytes"] == [p.stat().st_size for p in patches]

    r = httpx.get(f"{fed.server.url}/v1/admin/federated/{run['id']}/candidate", headers={"authorization": f"Bearer {fed.server.admin_token}"})
    assert r.status_code == 200
    candidate = fed.tmp / "candidate.gguf"
    candidate.write_bytes(r.content)
    got = tensor_delta(fed.base, candidate)
    deltas = [tensor_delta(fed.base, fed.tmp / f"ok{i}.gguf") for i in range(3)]
    for name, value in got.items():  # the numpy reference: np.average weighted by samples
        np.testing.assert_allclose(value, np.average([d[name] for d in deltas], axis=0, weights=samples), atol=1e-6)
    events = [e for e in fed.server.events(fed.devices[0].id) if e["type"] == "federated"]
    assert events[-1]["data"]["status"] == "accepted" and events[-1]["data"]["size"] == patches[0].stat().st_size


def test_malicious_updates_are_rejected_with_an_event_and_never_aggregated(fed: Fed) -> None:
    run = fed.start(min_participants=1, rounds=1, max_norm=1.0)
    nan = fed.update("nan", seed=5, override={"output_norm.weight": np.full(SPEC.n_embd, np.nan, np.float32)})
    huge = fed.update("huge", seed=6, scale=1.0)  # an L2 norm in the hundreds
    other = write_tiny_llama(fed.tmp / "other-base.gguf", TinyLlama(seed=9))
    wrong_base = update_file(other, perturbed(TinyLlama(seed=9), fed.tmp / "other-tuned.gguf", seed=1), fed.tmp / "wrong-base.patch")
    wider = update_file(fed.base, write_tiny_llama(fed.tmp / "wider.gguf", TinyLlama(n_ff=256)), fed.tmp / "wider.patch")
    garbage = fed.tmp / "garbage.patch"
    garbage.write_bytes(b"not a delta at all" * 10)
    a, b, c = fed.devices
    reasons = {}
    for d, patch, key in ((a, nan, "nan"), (b, huge, "huge"), (c, wrong_base, "wrong_base")):
        r = d.upload(run["id"], patch, 10)
        assert r.status_code == 200 and r.json()["status"] == "rejected", r.text
        reasons[key] = r.json()["reason"]
    assert "NaN or Inf" in reasons["nan"]
    assert "L2 norm" in reasons["huge"]
    assert "not this round's base" in reasons["wrong_base"]
    status = fed.status(run["id"])
    (entry,) = status["rounds"]
    assert entry == {**entry, "used": False, "accepted": 0, "rejected": 3, "candidate": None}
    events = [e for e in fed.server.events(b.id) if e["type"] == "federated"]
    assert events[-1]["data"]["status"] == "rejected" and "L2 norm" in events[-1]["data"]["reason"]

    run = fed.start(min_participants=1, rounds=1, max_update_bytes=1 << 20)
    for d, patch, why in ((a, wider, "name, shape or type"), (b, garbage, "")):
        r = d.upload(run["id"], patch, 10)
        assert r.status_code == 200 and r.json()["status"] == "rejected", r.text
        assert why in r.json()["reason"]
    big = fed.tmp / "big.patch"
    big.write_bytes(b"\0" * ((1 << 20) + 1))
    r = c.upload(run["id"], big, 10)
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]


def test_uploads_need_the_device_credential_and_cohort(fed: Fed) -> None:
    run = fed.start(min_participants=1, rounds=1, target="group=fed", cohort_size=1)
    (member,) = run["cohort"]
    outsider = next(d for d in fed.devices if d.id != member)
    patch = fed.update("auth", seed=11)
    url = f"{fed.server.url}/v1/devices/{member}/federated/{run['id']}/1"
    assert httpx.put(url, content=patch.read_bytes(), headers={"Edgeship-Samples": "1"}).status_code == 401
    forged = {"authorization": f"Bearer {member}.not-the-secret", "Edgeship-Samples": "1"}
    assert httpx.put(url, content=patch.read_bytes(), headers=forged).status_code == 401
    assert outsider.task() is None or outsider.task()["run"] != run["id"]
    r = outsider.upload(run["id"], patch, 1)
    assert r.status_code == 409 and "not in the cohort" in r.json()["error"]["message"]


def test_stragglers_are_dropped_at_the_deadline(fed: Fed) -> None:
    run = fed.start(min_participants=1, rounds=2, deadline_s=1.5)
    first = fed.devices[0]
    r = first.upload(run["id"], fed.update("early", seed=21), 5)
    assert r.json()["status"] == "accepted"
    time.sleep(1.6)
    status = fed.status(run["id"])
    assert status["round"] == 2 and status["status"] == "running"
    assert status["rounds"][0] | {"used": True, "accepted": 1, "dropped": 2} == status["rounds"][0]
    time.sleep(1.6)
    status = fed.status(run["id"])  # round 2: nobody answered, too few updates, not used
    assert status["status"] == "finished" and status["rounds"][1]["used"] is False and status["rounds"][1]["dropped"] == 3


def test_cli_starts_watches_and_pulls_a_candidate(fed: Fed, capsys: pytest.CaptureFixture[str]) -> None:
    conn = ("--server", fed.server.url, "--token", fed.server.admin_token)
    assert run(["federated", "start", "llm@1.0.0", "--target", "group=fed", "--min-participants", "2", "--cohort", "2", "--deadline", "5m", "--json", *conn]) == 0
    started = json.loads(capsys.readouterr().out)
    assert started["options"]["deadline_s"] == 300 and started["target"] == "group=fed"
    out = fed.tmp / "pulled.gguf"
    assert run(["federated", "pull", started["id"], "-o", str(out), *conn]) == 3  # no used round yet: not found
    assert "no used round" in capsys.readouterr().err and not out.exists()
    for i, d in enumerate(d for d in fed.devices if d.id in started["cohort"]):
        r = d.upload(started["id"], fed.update(f"cli{i}", seed=40 + i), 8, json.dumps({"loss_before": 3.0 - i, "loss_after": 2.0 - i}))
        assert r.json()["status"] == "accepted"
    assert run(["federated", "status", started["id"], *conn]) == 0
    assert "1.5000" in capsys.readouterr().out  # the mean loss after
    assert run(["federated", "pull", started["id"], "-o", str(out), "--json", *conn]) == 0
    pulled = json.loads(capsys.readouterr().out)
    assert pulled["round"] == 1 and pulled["candidate"] == str(hash_file(out)[0])
    deltas = [tensor_delta(fed.base, fed.tmp / f"cli{i}.gguf") for i in range(2)]
    np.testing.assert_allclose(tensor_delta(fed.base, out)["output.weight"], (deltas[0]["output.weight"] + deltas[1]["output.weight"]) / 2, atol=1e-6)
    assert run(["federated", "status", "--json", *conn]) == 0
    assert started["id"] in {r["id"] for r in json.loads(capsys.readouterr().out)}


def test_the_dashboard_shows_rounds_sizes_and_the_loss_curve(fed: Fed) -> None:
    run = fed.start(min_participants=1, rounds=2, cohort_size=1, deadline_s=600)
    (member,) = (d for d in fed.devices if d.id in run["cohort"])
    for round_no, (before, after) in enumerate(((3.25, 2.75), (2.75, 2.125)), start=1):
        r = member.upload(run["id"], fed.update(f"ui{round_no}", seed=60 + round_no), 4,
                          json.dumps({"loss_before": before, "loss_after": after}), round_no=round_no)
        assert r.json()["status"] == "accepted", r.text
    with httpx.Client(base_url=fed.server.url) as browser:
        assert login(browser, fed.server.admin_token).status_code == 303
        page = browser.get("/ui/federated?partial=1")
    assert page.status_code == 200
    card = page.text[page.text.index(f'id="{run["id"]}"'):]
    card = card[: card.index("</section>")]
    assert "2.1250" in card and "3.2500" in card  # per-round mean losses
    assert card.count('class="line s-loss_') == 2  # the loss curves: before and after training
    size = (fed.tmp / "ui1.patch").stat().st_size
    assert human_size(size) in card
