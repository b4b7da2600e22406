"""Releases that ship the same GGUF bytes share one loaded llama.cpp model across a swap.

A release that changes only its chat template (or anything else but the model file) swaps in
without loading: its backend runs on the serving release's model, with its own template. The
model is freed when the last release using it goes; a release with other GGUF bytes loads its own.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from edgeship.release.bundle import CHAT_TEMPLATE_META
from edgeship.release.manifest import ComponentKind
from edgeship.runtime import BackgroundServer, RuntimeClient
from edgeship.runtime.backend import BackendOptions
from edgeship.runtime.llama import GenerationParams, LlamaBackend
from edgeship.runtime.release import prepare_release

from .conftest import IMAGE_META, Models, config_for
from .harness import Device, Load

SHORT = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
# The same conversation, a dozen tokens longer: which template rendered a chat shows in its prompt_tokens.
LONG = "{% for m in messages %}Question from the user follows here now: {{ m['content'] }}{% endfor %}"
CHAT = {"model": "llm", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 2, "temperature": 0}


def install(device: Device, models: Models, version: str, template: str, *, llama: str = "llama_a",
            make_current: bool = False) -> str:
    """The LLM (with ``template`` in its release) beside the image model, as standard_release has them."""
    return device.install(version, {"llm": (ComponentKind.GGUF, getattr(models, llama)),
                                    "denoiser": (ComponentKind.ONNX, models.denoiser)},
                          meta={"llm": {CHAT_TEMPLATE_META: template}, "denoiser": {"image": IMAGE_META}},
                          make_current=make_current)


def llm(server: BackgroundServer) -> LlamaBackend:
    current = server.runtime.host.current
    assert current is not None
    backend = current.backends["llm"]
    assert isinstance(backend, LlamaBackend)
    return backend


def prompt_tokens(server: BackgroundServer) -> int:
    reply = httpx.post(f"{server.url}/v1/chat/completions", json=CHAT, timeout=60)
    assert reply.status_code == 200, reply.text
    return int(reply.json()["usage"]["prompt_tokens"])


def test_a_template_only_release_runs_on_the_loaded_model_with_its_own_template(device: Device, models: Models) -> None:
    install(device, models, "1.0.0", SHORT, make_current=True)
    b = install(device, models, "2.0.0", LONG)
    with BackgroundServer(config_for(device)) as server, RuntimeClient(device.root, server.url) as client:
        short = prompt_tokens(server)
        old = llm(server)
        in_flight = server.runtime.host.lease()  # a request still running on 1.0.0 during the swap
        swapped: list = []
        t = threading.Thread(target=lambda: swapped.append(client.swap(b)))
        t.start()
        while httpx.post(f"{server.url}/v1/completions", json={"model": "llm", "prompt": "Hi", "max_tokens": 1},
                         timeout=60).json()["system_fingerprint"] != b:
            time.sleep(0.01)
        new = llm(server)
        assert new is not old and new._llama is old._llama  # one llama.cpp model, two releases' backends
        long = prompt_tokens(server)
        assert long > short  # 2.0.0 answers chats through its template...
        overlap = old.chat(CHAT["messages"], GenerationParams(max_tokens=1, temperature=0))  # type: ignore[arg-type]
        assert overlap["usage"]["prompt_tokens"] == short  # ...while 1.0.0's request still renders with its own
        in_flight.close()
        t.join(timeout=60)
        [outcome] = swapped
        assert outcome.shared == ["llm"] and outcome.old_freed
        # 1.0.0 is closed, its model is not: 2.0.0 still answers on it.
        assert not in_flight.release.backends and new._llama._model.model is not None
        assert prompt_tokens(server) == long
        reply = httpx.post(f"{server.url}/v1/completions", json={"model": "llm", "prompt": "Hi", "max_tokens": 3})
        assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] > 0


def test_other_gguf_bytes_load_their_own_model_and_the_shared_one_is_freed_with_its_last_release(
        device: Device, models: Models) -> None:
    install(device, models, "1.0.0", SHORT, make_current=True)
    b = install(device, models, "2.0.0", LONG)
    c = install(device, models, "3.0.0", SHORT, llama="llama_b")
    with BackgroundServer(config_for(device)) as server, RuntimeClient(device.root, server.url) as client:
        first = llm(server)._llama
        assert client.swap(b).shared == ["llm"]
        outcome = client.swap(c)
        assert outcome.shared == [] and outcome.old_freed and outcome.warmup_seconds > 0
        assert llm(server)._llama is not first
        assert first._model.model is None  # both releases on it are gone: the model is freed
        assert prompt_tokens(server) > 0


def test_a_shared_model_needs_no_room_beside_the_serving_release(device: Device, models: Models) -> None:
    install(device, models, "1.0.0", SHORT, make_current=True)
    b = install(device, models, "2.0.0", LONG)
    c = install(device, models, "3.0.0", SHORT, llama="llama_b")
    one = prepare_release(device.store.release_dir(b), BackendOptions(threads=1, n_ctx=256)).memory
    with BackgroundServer(config_for(device, memory_budget=int(one * 1.5))) as server, \
            RuntimeClient(device.root, server.url) as client:
        shared = client.swap(b)
        assert not shared.drain_first and shared.not_ready_seconds == 0 and shared.shared == ["llm"]
        assert client.swap(c).drain_first  # other bytes: both do not fit


def test_a_swap_to_the_same_gguf_does_not_read_its_header_again(device: Device, models: Models,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeship.formats import facts

    install(device, models, "1.0.0", SHORT, make_current=True)
    b = install(device, models, "2.0.0", LONG)
    c = install(device, models, "3.0.0", SHORT, llama="llama_b")
    read: list[str] = []
    parse = facts.read_header
    monkeypatch.setattr(facts, "read_header", lambda path, **kw: read.append(path.name) or parse(path, **kw))
    with BackgroundServer(config_for(device)) as server, RuntimeClient(device.root, server.url) as client:
        client.swap(b)
        assert read == [models.llama_a.name]  # at the start only: 2.0.0 has the same file
        client.swap(c)
        assert read == [models.llama_a.name, models.llama_b.name]
        assert server.runtime.host.current is not None
        assert server.runtime.host.current.backends["llm"].describe()["architecture"] == "llama"


def test_swaps_between_releases_sharing_a_model_under_load_fail_no_request(device: Device, models: Models) -> None:
    a = install(device, models, "1.0.0", SHORT, make_current=True)
    b = install(device, models, "2.0.0", LONG)
    with BackgroundServer(config_for(device)) as server, RuntimeClient(device.root, server.url) as client:
        with Load(server.url) as load:
            outcomes = []
            for i in range(20):
                outcomes.append(client.swap(b if i % 2 == 0 else a))
                time.sleep(0.05)  # let requests land on the new release before the next swap
        assert all(o.changed and o.old_freed and o.shared == ["llm"] for o in outcomes)
        assert len(load.answers) > 20 and [x for x in load.answers if x[2] != 200] == []
        assert {x[3] for x in load.answers} == {a, b}
        assert prompt_tokens(server) > 0  # after twenty releases came and went, the model still serves


def test_the_outcome_says_where_the_swap_time_went(device: Device, models: Models) -> None:
    install(device, models, "1.0.0", SHORT, make_current=True)
    c = install(device, models, "3.0.0", SHORT, llama="llama_b")
    with BackgroundServer(config_for(device)) as server, RuntimeClient(device.root, server.url) as client:
        in_flight = server.runtime.host.lease()
        swapped: list = []
        t = threading.Thread(target=lambda: swapped.append(client.swap(c)))
        t.start()
        while server.runtime.host.current is in_flight.release:
            time.sleep(0.01)
        time.sleep(0.5)  # the old release drains for at least this long
        in_flight.close()
        t.join(timeout=60)
    [o] = swapped
    assert 0 < o.prepare_seconds and 0 < o.warmup_seconds < o.load_seconds
    assert o.prepare_seconds + o.load_seconds <= o.serving_seconds < o.swap_seconds
    assert o.drain_seconds >= 0.5 and o.free_seconds > 0
    assert o.serving_seconds + o.drain_seconds + o.free_seconds <= o.swap_seconds  # the phases follow each other
