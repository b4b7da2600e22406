"""The demo on the user's own GGUF (`edgeship demo --model`): v2 is the same model with a chat
template in its metadata, a change of a few kilobytes that travels as a tiny delta.

A model without a template gets one (the turn format for Gemma, ChatML for others); a model
with one gets the same template under a comment, so its answers do not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edgeship.formats import read_facts, read_header
from edgeship.formats.gguf_edit import with_string
from edgeship.optimize.memory import estimate_memory
from edgeship.optimize.profiles import Profile
from edgeship.optimize.select import release_requirements

TEMPLATE_KEY = "tokenizer.chat_template"
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else 'user' %}"
    "<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
V2_MARK = "{#- edgeship demo v2 -#}"
COMPLETION_PROMPT = "The Eiffel Tower is in the city of"


def v2_template(architecture: str | None, existing: str | None) -> str:
    """The chat template v2 carries (see the module doc)."""
    if existing:
        return V2_MARK + existing
    return GEMMA_TEMPLATE if (architecture or "").startswith("gemma") else CHATML_TEMPLATE


def write_v2(model: Path, out: Path) -> str:
    """Write v2 of ``model`` to ``out``; returns what changed, for the narration."""
    header = read_header(model)
    existing = header.get(TEMPLATE_KEY)
    with_string(model, out, TEMPLATE_KEY, v2_template(header.architecture, existing))
    return "marks its chat template" if existing else "adds a chat template to its metadata"


def requires(model: Path, profiles: Sequence[Profile], ctx: int) -> str:
    """`release push --requires` for ``model`` on ``profiles``: as `optimize --push` would require."""
    needed = estimate_memory(read_facts(model), ctx).total
    req = release_requirements(needed, profiles)
    return f"ram={req.min_ram},arch={'|'.join(req.arch)}"
