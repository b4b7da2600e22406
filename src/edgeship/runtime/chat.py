"""Which chat template a GGUF model answers chats with (pure: no I/O, no llama.cpp).

The order: the release's own template (``meta.chat_template`` of the GGUF component, set by
``edgeship release push --chat-template`` and signed with the manifest), then the GGUF's
``tokenizer.chat_template``, then edgeship's default for the model family that
``general.architecture`` names. With none of them a chat is refused with what to do: llama.cpp
would otherwise fall back to the llama-2 format, which a model of another family answers with
nothing at all (an empty 200).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ChatTemplate:
    source: str  # "release", "gguf" or "default:<family>"
    text: str
    stop: tuple[str, ...] = ()  # end-of-turn strings besides the model's end-of-generation tokens

    def describe(self) -> dict[str, object]:
        return {"source": self.source, "stop": list(self.stop)}


# Templates written for each family's documented turn format (the families' published
# templates reduced to text-only chats). Each renders bos_token itself: llama-cpp-python adds
# no BOS in front of a rendered chat.
_GEMMA = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}{% set prefix = messages[0]['content'] | trim + '\n\n' %}"
    "{% set turns = messages[1:] %}{% else %}{% set prefix = '' %}{% set turns = messages %}{% endif %}"
    "{% for m in turns %}"
    "{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Gemma chats alternate user and assistant turns, starting with the user') }}{% endif %}"
    "{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else 'user') + '\n' }}"
    "{{ (prefix if loop.first else '') + m['content'] | trim }}{{ '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
# Llama 2 and Mistral's [INST] format. A "llama" GGUF without a template of its own is most
# likely one of these (Llama 3 GGUFs carry their template).
_INST = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] | trim %}"
    "{% set turns = messages[1:] %}{% else %}{% set system = '' %}{% set turns = messages %}{% endif %}"
    "{% for m in turns %}"
    "{% if m['role'] == 'user' %}"
    "{{ '[INST] ' + ('<<SYS>>\n' + system + '\n<</SYS>>\n\n' if loop.first and system else '') + m['content'] | trim + ' [/INST]' }}"
    "{% else %}{{ ' ' + m['content'] | trim + eos_token }}{% endif %}"
    "{% endfor %}"
)
_CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_PHI3 = (
    "{{ bos_token }}{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + '<|end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

FAMILIES: Mapping[str, ChatTemplate] = {
    "gemma": ChatTemplate("default:gemma", _GEMMA, ("<end_of_turn>",)),
    "llama-2": ChatTemplate("default:llama-2", _INST, ("</s>",)),
    "chatml": ChatTemplate("default:chatml", _CHATML, ("<|im_end|>",)),
    "phi3": ChatTemplate("default:phi3", _PHI3, ("<|end|>", "<|endoftext|>")),
}
# general.architecture -> family; an architecture not here has no default.
ARCHITECTURES: Mapping[str, str] = {
    "gemma": "gemma", "gemma2": "gemma", "gemma3": "gemma", "gemma3n": "gemma",
    "llama": "llama-2", "mistral": "llama-2", "mistral3": "llama-2",
    "qwen": "chatml", "qwen2": "chatml", "qwen2moe": "chatml", "qwen3": "chatml", "qwen3moe": "chatml",
    "phi3": "phi3",
}


def choose_template(release: str | None, gguf: str | None, architecture: str | None) -> ChatTemplate | None:
    """The template chats use: the release's, else the GGUF's, else the family default, else None."""
    if release and release.strip():
        return ChatTemplate("release", release)
    if gguf and gguf.strip():
        return ChatTemplate("gguf", gguf)
    family = ARCHITECTURES.get(architecture or "")
    return FAMILIES[family] if family else None


def missing_template_hint() -> str:
    return ("push a release with `edgeship release push --chat-template FILE`, "
            "or send a prompt you formatted yourself to /v1/completions")
