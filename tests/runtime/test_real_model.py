"""The real model (Gemma 3 270M Q4_K_M) end to end: signed releases pushed to a real server,
installed by a real agent, served and hot-swapped by the runtime under a continuous load.

One fleet for the whole module: the 253 MB model is stored, served and installed once. The
GGUF has no chat template; release 1.0.0 chats through edgeship's Gemma default, 2.0.0 is the
same model with a question/answer template added to its metadata (the device fetches a ~1 KB
delta, not the model), 3.0.0 brings a template of its own (signed into the manifest) that
cannot render.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from edgeship.formats.gguf_edit import with_string
from edgeship.release.manifest import HealthSuite, Manifest
from edgeship.runtime import BackgroundServer, RuntimeConfig
from edgeship.workspace import Workspace
from tests.agent.harness import Device, Releases, Server

from .harness import Load

QUESTION = "Q: What is the capital of France?\nA:"
# The model is a base model: it answers questions put as "Q: ... A:", so that is the template 2.0.0 brings.
QA_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'assistant' %}A: {{ m['content'] }}\n"
               "{% else %}Q: {{ m['content'] }}\n{% endif %}{% endfor %}A:")
PARIS_BY_COMPLETION = {"type": "llm", "prompt": QUESTION, "max_tokens": 8, "regex": "Paris"}
PARIS_BY_CHAT = {"type": "llm", "prompt": "What is the capital of France?", "chat": True, "max_tokens": 8, "regex": "Paris"}


@dataclass
class Fleet:
    server: Server
    device: Device
    runtime: BackgroundServer
    releases: dict[str, Manifest]

    def serving(self) -> dict[str, object]:
        [model] = httpx.get(f"{self.runtime.url}/v1/models").json()["data"]
        return model

    def upgrade(self, version: str) -> tuple[int, str]:
        self.server.assign(f"llm@{version}", tag=self.device.tag)
        done = self.device.run("--runtime", self.runtime.url, timeout=300)
        return done.returncode, done.stderr


@pytest.fixture(scope="module")
def fleet(real_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("real-fleet")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("EDGESHIP_KEY_PASSPHRASE", raising=False)
        ws = Workspace.init(tmp / "ws", passphrase=None)
    releases = Releases(ws, real_gguf, tmp / "src")
    with_template = tmp / "gemma-qa" / real_gguf.name
    with_template.parent.mkdir()
    with_string(real_gguf, with_template, "tokenizer.chat_template", QA_TEMPLATE)
    published = {
        "1.0.0": releases.publish("1.0.0", health=HealthSuite(checks=(PARIS_BY_COMPLETION,))),
        "2.0.0": releases.publish("2.0.0", model=with_template, deltas=True, health=HealthSuite(checks=(PARIS_BY_CHAT,))),
        "3.0.0": releases.publish("3.0.0", model=with_template,
                                  chat_template="{{ raise_exception('this template is broken') }}"),
    }
    server = Server.create(ws, tmp / "server")
    server.start()
    try:
        device = Device(server, tmp / "device", releases.root(), "dev=real", server.enroll_token({"dev": "real"}))
        device.data.mkdir()
        with BackgroundServer(RuntimeConfig(data_dir=device.data, n_ctx=512, threads=2)) as runtime:
            fleet = Fleet(server, device, runtime, published)
            code, err = fleet.upgrade("1.0.0")
            assert code == 0 and device.version() == "1.0.0", err
            yield fleet
    finally:
        server.stop()


def test_a_greedy_completion_knows_the_capital_of_france(fleet: Fleet) -> None:
    reply = httpx.post(f"{fleet.runtime.url}/v1/completions",
                       json={"model": "model", "prompt": QUESTION, "max_tokens": 8, "temperature": 0}, timeout=120)
    assert reply.status_code == 200
    assert "Paris" in reply.json()["choices"][0]["text"]


def test_a_chat_goes_through_the_template_the_runtime_names(fleet: Fleet) -> None:
    template = fleet.serving()["chat_template"]
    assert template["source"] in ("default:gemma", "release")  # type: ignore[index]
    reply = httpx.post(f"{fleet.runtime.url}/v1/chat/completions", timeout=120,
                       json={"model": "model", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8,
                             "temperature": 0})
    assert reply.status_code == 200
    body = reply.json()
    assert body["choices"][0]["message"]["content"].strip() and body["usage"]["completion_tokens"] > 0


def test_the_release_adding_a_template_swaps_in_under_load_without_a_failed_request(fleet: Fleet) -> None:
    before = fleet.serving()["release_id"]
    question = {"model": "model", "prompt": QUESTION, "max_tokens": 3, "temperature": 0}
    with Load(fleet.runtime.url, prompt=question, predict=False) as load:
        code, err = fleet.upgrade("2.0.0")
    assert code == 0 and fleet.device.version() == "2.0.0", err
    new = fleet.releases["2.0.0"].release_id
    assert fleet.serving()["release_id"] == new and fleet.serving()["chat_template"]["source"] == "gguf"  # type: ignore[index]
    assert load.answers and [a for a in load.answers if a[2] != 200] == []
    assert {a[3] for a in load.answers} == {before, new}  # requests ran on both sides of the swap
    # The template the release brought makes the chat answer: the agent's trial asked the same.
    reply = httpx.post(f"{fleet.runtime.url}/v1/chat/completions", timeout=120,
                       json={"model": "model", "messages": [{"role": "user", "content": "What is the capital of France?"}],
                             "max_tokens": 8, "temperature": 0})
    assert "Paris" in reply.json()["choices"][0]["message"]["content"]
    # The model changed by its template only: the device fetched a signed delta of about a kilobyte.
    [download] = [e for e in fleet.server.events(fleet.device.device_id)
                  if e["type"] == "download" and e["release"] == "llm@2.0.0"]
    assert download["data"]["by_delta"] == ["model"]
    assert download["data"]["bytes_downloaded"] < 4096 < 250_000_000 < download["data"]["full_size"]


def test_a_template_that_cannot_render_is_rolled_back_and_the_old_release_keeps_serving(fleet: Fleet) -> None:
    before, version = fleet.serving()["release_id"], fleet.device.version()
    code, err = fleet.upgrade("3.0.0")
    assert fleet.device.version() == version, err
    assert fleet.serving()["release_id"] == before
    [rolled] = [e for e in fleet.server.events(fleet.device.device_id)
                if e["state"] == "rolled_back" and e["release"] == "llm@3.0.0"]
    assert "this template is broken" in rolled["data"]["reason"]


def test_swaps_give_the_old_model_s_memory_back(real_gguf: Path, tmp_path: Path) -> None:
    from edgeship.release.manifest import ComponentKind
    from edgeship.runtime import RuntimeClient
    from edgeship.runtime.rss import rss_bytes

    from .harness import Device as RuntimeDevice

    # Other bytes than the model's (its template in the metadata): each swap loads one model and frees the other.
    edited = tmp_path / "gemma-qa" / real_gguf.name
    edited.parent.mkdir()
    with_string(real_gguf, edited, "tokenizer.chat_template", QA_TEMPLATE)
    device = RuntimeDevice(tmp_path / "device")
    a = device.install("1.0.0", {"llm": (ComponentKind.GGUF, real_gguf)})
    b = device.install("2.0.0", {"llm": (ComponentKind.GGUF, edited)}, make_current=False)
    with BackgroundServer(RuntimeConfig(data_dir=device.root, n_ctx=512, threads=1)) as runtime, \
            RuntimeClient(device.root, runtime.url) as client:
        loaded = rss_bytes()
        for release in (b, a, b, a):
            outcome = client.swap(release)
            assert outcome.old_freed and outcome.shared == []
        # glibc keeps a freed model's buffers unless asked to give them back: ~50 MiB more per swap.
        assert rss_bytes() - loaded < 24 * 2**20


def test_a_template_only_release_shares_the_loaded_model_under_load(real_gguf: Path, tmp_path: Path) -> None:
    from edgeship.release.manifest import ComponentKind
    from edgeship.runtime import RuntimeClient

    from .harness import Device as RuntimeDevice

    device = RuntimeDevice(tmp_path / "device")
    files = {"llm": (ComponentKind.GGUF, real_gguf)}
    a = device.install("1.0.0", files)
    b = device.install("2.0.0", files, meta={"llm": {"chat_template": QA_TEMPLATE}}, make_current=False)
    question = {"model": "llm", "prompt": QUESTION, "max_tokens": 3, "temperature": 0}
    chat = {"model": "llm", "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 8, "temperature": 0}
    with BackgroundServer(RuntimeConfig(data_dir=device.root, n_ctx=512, threads=1)) as runtime, \
            RuntimeClient(device.root, runtime.url) as client:
        outcomes = []
        with Load(runtime.url, prompt=question, predict=False) as load:
            for release in (a, b, a, b):
                seen = len(load.answers)
                if release != a or seen:  # 1.0.0 serves from the start
                    outcomes.append(client.swap(release))
                deadline = time.monotonic() + 120
                while not any(x[3] == release for x in load.answers[seen:]):  # requests on it before the next swap
                    assert time.monotonic() < deadline, f"no request answered by {release[:12]}"
                    time.sleep(0.05)
        assert len(outcomes) == 3 and all(o.shared == ["llm"] and o.old_freed for o in outcomes)
        assert [x for x in load.answers if x[2] != 200] == []
        # 2.0.0's template (Q: ... A:) makes the base model answer the chat, on the model 1.0.0 loaded.
        [model] = httpx.get(f"{runtime.url}/v1/models").json()["data"]
        assert model["release_id"] == b and model["chat_template"]["source"] == "release"
        reply = httpx.post(f"{runtime.url}/v1/chat/completions", json=chat, timeout=120)
        assert "Paris" in reply.json()["choices"][0]["message"]["content"]
