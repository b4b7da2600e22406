"""LoRA adapters on the loaded base: per request or as the default, attached without a reload."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from edgeship.errors import UsageError
from edgeship.release.manifest import BASE_META, ComponentKind
from edgeship.runtime import BackgroundServer, RuntimeClient
from edgeship.runtime.adapters import AdapterChoice, parse_model
from edgeship.samples.lora import write_lora
from edgeship.store.digest import hash_file

from .conftest import Models, config_for
from .harness import PROMPT, Device, Load


def test_a_model_name_carries_the_adapters_and_their_scales() -> None:
    assert parse_model("llm") == ("llm", None)
    assert parse_model("llm+tone") == ("llm", (AdapterChoice("tone"),))
    assert parse_model("llm+tone*0.5+de") == ("llm", (AdapterChoice("tone", 0.5), AdapterChoice("de")))
    assert str(AdapterChoice("tone", 0.5)) == "tone*0.5" and str(AdapterChoice("de")) == "de"
    for bad in ("llm+", "llm+tone*x", "llm+tone*inf", "llm+tone+tone"):
        with pytest.raises(UsageError) as info:
            parse_model(bad)
        assert info.value.hint


def install_with_adapters(device: Device, models: Models, tmp_path: Path) -> str:
    digest = str(hash_file(models.llama_a)[0])
    files = {"llm": (ComponentKind.GGUF, models.llama_a)}
    for i, name in enumerate(("tone", "terse")):
        files[name] = (ComponentKind.LORA, write_lora(tmp_path / f"{name}.gguf", models.llama_a, seed=i, std=0.5))
    return device.install("1.0.0", files, meta={"tone": {BASE_META: digest}, "terse": {BASE_META: digest}})


LONG = "A longer prompt, so that the cache of its prefix matters"


def complete(url: str, model: str, prompt: str = PROMPT["prompt"]) -> str:
    reply = httpx.post(f"{url}/v1/completions", json={**PROMPT, "model": model, "max_tokens": 6, "prompt": prompt},
                       timeout=60)
    assert reply.status_code == 200, reply.text
    return reply.json()["choices"][0]["text"]


def test_adapters_change_the_answer_per_request_and_as_default_without_reloading_the_base(
        device: Device, models: Models, tmp_path: Path) -> None:
    install_with_adapters(device, models, tmp_path)
    with BackgroundServer(config_for(device)) as server, RuntimeClient(device.root, server.url) as client:
        loaded = server.runtime.host.current
        assert loaded is not None
        llama = loaded.backends["llm"]._llama  # type: ignore[attr-defined]
        plain = complete(server.url, "llm")
        tone, terse = complete(server.url, "llm+tone"), complete(server.url, "llm+terse")
        assert len({plain, tone, terse}) == 3, "each adapter really attaches and changes the answer"
        assert complete(server.url, "llm+tone*0") == plain, "scale 0 is the base"
        assert complete(server.url, "llm+tone+terse") not in (plain, tone, terse)
        assert complete(server.url, "llm") == plain, "detached again (and no KV cache from the adapter reused)"
        assert complete(server.url, "llm+tone") == tone

        # llama-cpp-python reuses the KV cache of a prompt's common prefix: computed under other
        # adapters it is stale, so attaching must drop it (same answer as from a cold cache).
        complete(server.url, "llm+tone", "Q")
        cold = complete(server.url, "llm+tone", LONG)
        assert complete(server.url, "llm", LONG) != cold
        assert complete(server.url, "llm+tone", LONG) == cold

        models_seen = httpx.get(f"{server.url}/v1/models").json()["data"]
        assert [m["adapters"] for m in models_seen if m["id"] == "llm"] == [["terse", "tone"]]
        unknown = httpx.post(f"{server.url}/v1/completions", json={**PROMPT, "model": "llm+nope"})
        assert unknown.status_code == 404 and "available: terse, tone" in unknown.text

        # The default, swapped under continuous requests naming none: no failure, every answer
        # is the base's or one adapter's, and each setting is served right after it returns.
        expected = {"": plain, "tone": tone, "terse": terse}
        with Load(server.url, prompt={**PROMPT, "max_tokens": 6}, predict=False) as load:
            for i in range(12):
                default = ("tone", "terse", "")[i % 3]
                shown = client.adapters(default)
                assert shown["default"] == ([default] if default else [])
                assert complete(server.url, "llm") == expected[default]
                time.sleep(0.05)
        assert len(load.answers) > 12
        assert [a for a in load.answers if a[2] != 200] == []
        assert {a[4] for a in load.answers} <= set(expected.values())
        assert server.runtime.host.current is loaded and loaded.backends["llm"]._llama is llama, "the base was never reloaded"

        with pytest.raises(Exception, match="no adapter 'nope'"):
            client.adapters("nope")


def test_a_release_of_adapters_alone_runs_on_the_installed_base(device: Device, models: Models, tmp_path: Path) -> None:
    base = device.install("1.0.0", {"llm": (ComponentKind.GGUF, models.llama_a)})
    tone = write_lora(tmp_path / "tone.gguf", models.llama_a, std=0.5)
    device.install("2.0.0", {"tone": (ComponentKind.LORA, tone)},
                   meta={"tone": {BASE_META: str(hash_file(models.llama_a)[0])}})
    with BackgroundServer(config_for(device)) as server, RuntimeClient(device.root, server.url) as client:
        assert [m["id"] for m in httpx.get(f"{server.url}/v1/models").json()["data"]] == ["base"]
        with_tone = complete(server.url, "base+tone")
        client.swap(base)
        assert complete(server.url, "llm") != with_tone


def test_an_adapter_for_the_real_gemma_attaches_and_detaches_without_a_reload(real_gguf: Path, device: Device,
                                                                              tmp_path: Path) -> None:
    adapter = write_lora(tmp_path / "tone.gguf", real_gguf, rank=8, std=0.1)
    device.install("1.0.0", {"llm": (ComponentKind.GGUF, real_gguf), "tone": (ComponentKind.LORA, adapter)},
                   meta={"tone": {BASE_META: str(hash_file(real_gguf)[0])}})
    with BackgroundServer(config_for(device)) as server, RuntimeClient(device.root, server.url) as client:
        loaded = server.runtime.host.current
        assert loaded is not None
        llama = loaded.backends["llm"]._llama  # type: ignore[attr-defined]
        prompt = "The best thing about small devices is"
        plain = complete(server.url, "llm", prompt)
        tuned = complete(server.url, "llm+tone", prompt)
        assert tuned != plain, "llama.cpp took the adapter and it changed Gemma's answer"
        assert complete(server.url, "llm", prompt) == plain
        with Load(server.url, prompt={**PROMPT, "model": "llm", "max_tokens": 2}, predict=False, threads=1) as load:
            for i, default in enumerate(("tone", "", "tone")):
                client.adapters(default)
                while len(load.answers) <= i:  # a request lands on each setting
                    time.sleep(0.05)
        assert [a for a in load.answers if a[2] != 200] == []
        assert server.runtime.host.current is loaded and loaded.backends["llm"]._llama is llama
