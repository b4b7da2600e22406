"""The demo on the user's own GGUF (`edgeship demo --model`): v2 is the same model with a chat
template in its metadata, a change of about a kilobyte that travels as a tiny delta.

A model without a template gets a question/answer one ("Q: …" / "A:"), which base models such
as Gemma 3 270M answer (they continue text; they do not follow chat turns). A model with a
template keeps it, under a comment, so its answers do not change.
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
QA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'assistant' %}A: {{ m['content'] }}\n"
    "{% else %}Q: {{ m['content'] }}\n{% endif %}{% endfor %}A:"
)
V2_MARK = "{#- edgeship demo v2 -#}"
COMPLETION_PROMPT = "The Eiffel Tower is in the city of"  # v1, before any template
CHAT_PROMPT = "What is the capital of France?"  # v2, through its template


def v2_template(existing: str | None) -> str:
    """The chat template v2 carries (see the module doc)."""
    return V2_MARK + existing if existing else QA_TEMPLATE


def write_v2(model: Path, out: Path) -> str:
    """Write v2 of ``model`` to ``out``; returns what changed, for the narration."""
    existing = read_header(model).get(TEMPLATE_KEY)
    with_string(model, out, TEMPLATE_KEY, v2_template(existing))
    return "marks its chat template" if existing else "adds a question/answer chat template to its metadata"


def requires(model: Path, profiles: Sequence[Profile], ctx: int) -> str:
    """`release push --requires` for ``model`` on ``profiles``: as `optimize --push` would require."""
    needed = estimate_memory(read_facts(model), ctx).total
    req = release_requirements(needed, profiles)
    return f"ram={req.min_ram},arch={'|'.join(req.arch)}"
