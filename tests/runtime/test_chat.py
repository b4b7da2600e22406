"""Chat templates: which one a model chats with, what /v1/models and /props say, and bad templates."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from edgeship.errors import RuntimeBackendError
from edgeship.release.bundle import CHAT_TEMPLATE_META
from edgeship.release.manifest import ComponentKind
from edgeship.runtime import BackgroundServer, RuntimeClient
from edgeship.runtime.chat import ARCHITECTURES, FAMILIES, choose_template
from edgeship.samples.llama import TinyLlama, write_tiny_llama

from .conftest import Models, config_for
from .harness import Device

# Renders the conversation as plain "role: content" lines, so a test can send the same text as a completion.
PLAIN = "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
CHAT = [{"role": "user", "content": "Hi"}]


def test_the_release_template_wins_then_the_gguf_then_the_family_default() -> None:
    assert choose_template("R", "G", "gemma3") is not None and choose_template("R", "G", "gemma3").source == "release"
    assert choose_template(None, "G", "gemma3").source == "gguf"  # type: ignore[union-attr]
    assert choose_template("  ", "G", "gemma3").source == "gguf"  # type: ignore[union-attr]
    assert choose_template(None, None, "gemma3") == FAMILIES["gemma"]
    assert choose_template(None, "", "qwen2").source == "default:chatml"  # type: ignore[union-attr]
    assert choose_template(None, None, "bert") is None
    assert choose_template(None, None, None) is None


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_every_default_renders_a_conversation_with_its_turn_markers(architecture: str) -> None:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = choose_template(None, None, architecture)
    assert template is not None
    formatter = Jinja2ChatFormatter(template=template.text, eos_token="</s>", bos_token="<s>")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"},
                {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And Italy?"}]
    prompt = formatter(messages=messages).prompt
    for text in ("Be brief.", "Capital of France?", "Paris.", "And Italy?"):
        assert text in prompt
    assert prompt.index("Capital of France?") < prompt.index("Paris.") < prompt.index("And Italy?")
    # Each family's end-of-turn marker ends the assistant's turn in the prompt, so it is also where generation stops.
    assert any(stop in prompt for stop in template.stop)


def _serve(device: Device, models: Models, template: str | None = None, *, spec: TinyLlama | None = None,
           tmp: Path | None = None) -> str:
    model = models.llama_a if spec is None else write_tiny_llama(tmp / f"{spec.architecture}-{spec.seed}.gguf", spec)  # type: ignore[operator]
    meta = {"llm": {CHAT_TEMPLATE_META: template}} if template is not None else None
    return device.install("1.0.0", {"llm": (ComponentKind.GGUF, model)}, meta=meta)


def test_a_release_template_is_used_and_shown(device: Device, models: Models) -> None:
    _serve(device, models, PLAIN)
    with BackgroundServer(config_for(device)) as server:
        [model] = httpx.get(f"{server.url}/v1/models").json()["data"]
        assert model["chat_template"] == {"source": "release", "stop": []}
        assert model["n_ctx"] == 256 and model["architecture"] == "llama"
        props = httpx.get(f"{server.url}/props").json()
        assert props["chat_template"]["text"] == PLAIN and props["id"] == "llm"
        chat = httpx.post(f"{server.url}/v1/chat/completions",
                          json={"model": "llm", "messages": CHAT, "max_tokens": 6, "temperature": 0}).json()
        # The chat is the completion of the rendered template (the completion adds the BOS the template renders).
        same = httpx.post(f"{server.url}/v1/completions",
                          json={"model": "llm", "prompt": "user: Hi\nassistant:", "max_tokens": 6, "temperature": 0}).json()
        assert chat["choices"][0]["message"]["content"] == same["choices"][0]["text"]


def test_the_gguf_template_then_the_family_default(device: Device, models: Models, tmp_path: Path) -> None:
    _serve(device, models, spec=TinyLlama(seed=1, chat_template=PLAIN), tmp=tmp_path)
    with BackgroundServer(config_for(device)) as server:
        assert httpx.get(f"{server.url}/props").json()["chat_template"]["source"] == "gguf"
    other = Device(tmp_path / "other")
    _serve(other, models)
    with BackgroundServer(config_for(other)) as server:
        described = httpx.get(f"{server.url}/props").json()["chat_template"]
        assert described["source"] == "default:llama-2" and described["stop"] == ["</s>"]


def test_no_usable_template_is_a_clear_error_not_an_empty_answer(device: Device, models: Models, tmp_path: Path) -> None:
    # internlm2: an architecture llama.cpp runs with llama's tensors, and edgeship has no default for.
    _serve(device, models, spec=TinyLlama(seed=1, architecture="internlm2"), tmp=tmp_path)
    with BackgroundServer(config_for(device)) as server:
        [model] = httpx.get(f"{server.url}/v1/models").json()["data"]
        assert model["chat_template"] is None
        reply = httpx.post(f"{server.url}/v1/chat/completions", json={"model": "llm", "messages": CHAT, "max_tokens": 4})
        assert reply.status_code == 400
        message = reply.json()["error"]["message"]
        assert "no chat template" in message and "'internlm2'" in message and "--chat-template" in message
        completion = httpx.post(f"{server.url}/v1/completions", json={"model": "llm", "prompt": "Hi", "max_tokens": 2})
        assert completion.status_code == 200


def test_a_template_refusing_the_conversation_is_a_400(device: Device, models: Models) -> None:
    _serve(device, models, "{% if messages | length > 1 %}{{ raise_exception('one message only') }}{% endif %}x")
    with BackgroundServer(config_for(device)) as server:
        two = [*CHAT, {"role": "user", "content": "again"}]
        for stream in (False, True):
            reply = httpx.post(f"{server.url}/v1/chat/completions",
                               json={"model": "llm", "messages": two, "max_tokens": 2, "stream": stream})
            assert reply.status_code == 400
            assert "chat template from release" in reply.json()["error"]["message"]
            assert "one message only" in reply.json()["error"]["message"]


@pytest.mark.parametrize(("template", "problem"), [
    ("{% for m in messages %}{{ m['content'] }", "not a valid Jinja template"),
    ("{{ raise_exception('this template renders nothing') }}", "cannot render"),
])
def test_a_template_that_cannot_render_fails_the_swap_and_the_old_release_keeps_serving(
        device: Device, models: Models, template: str, problem: str) -> None:
    good = _serve(device, models)
    bad = device.install("2.0.0", {"llm": (ComponentKind.GGUF, models.llama_b)},
                         meta={"llm": {CHAT_TEMPLATE_META: template}}, make_current=False)
    with BackgroundServer(config_for(device)) as server, RuntimeClient(server.data_dir, server.url) as client:
        with pytest.raises(RuntimeBackendError, match=problem):
            client.swap(bad)
        assert {m["release_id"] for m in httpx.get(f"{server.url}/v1/models").json()["data"]} == {good}
        assert httpx.get(f"{server.url}/readyz").json()["error"].count(problem) == 1


def test_an_architecture_this_llama_cpp_lacks_fails_the_swap_and_the_old_release_keeps_serving(
        device: Device, models: Models, tmp_path: Path) -> None:
    good = _serve(device, models)
    alien = write_tiny_llama(tmp_path / "alien.gguf", TinyLlama(architecture="edgeship-alien"))
    bad = device.install("2.0.0", {"llm": (ComponentKind.GGUF, alien)}, make_current=False, inspect=False)
    with BackgroundServer(config_for(device)) as server, RuntimeClient(server.data_dir, server.url) as client:
        with pytest.raises(RuntimeBackendError, match="llama.cpp cannot load component llm"):
            client.swap(bad)
        ok = httpx.post(f"{server.url}/v1/completions", json={"model": "llm", "prompt": "Hi", "max_tokens": 2}).json()
        assert ok["system_fingerprint"] == good
