"""The shape of a GGUF language model, from its header: read once, used by the memory
estimate and by the runtime's loader alike.

    facts = read_facts(path)             # one header parse
    estimate_memory(facts, ctx)          # edgeship.optimize.memory
    facts.chat_template, facts.ctx_train # what a loader needs to know before llama.cpp runs
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeship.errors import ValidationError
from edgeship.formats.gguf import GGUFHeader, read_header

FLOAT_TYPES = frozenset({"F32", "F16", "BF16", "F64", "I8", "I16", "I32", "I64"})
TOKENS = "tokenizer.ggml.tokens"
CHAT_TEMPLATE = "tokenizer.chat_template"


@dataclass(frozen=True)
class ModelFacts:
    """What the estimator and the loader need from a GGUF model (see ``read_facts``)."""

    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim_k: int
    head_dim_v: int
    n_ff: int
    n_vocab: int
    ctx_train: int
    n_params: int
    weight_bytes: int
    file_type: str  # "F32", "F16", "Q4_K_M", ...
    tensor_types: dict[str, int] = field(default_factory=dict)  # ggml type name -> tensor count
    n_tensors: int = 0
    name: str | None = None  # general.name
    chat_template: str | None = None  # tokenizer.chat_template; None when the model has none

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.weight_bytes / self.n_params if self.n_params else 0.0

    @property
    def is_quantized(self) -> bool:
        """True when any tensor is stored in a block-quantized type (not a float type)."""
        return any(t not in FLOAT_TYPES for t in self.tensor_types)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["has_chat_template"] = doc.pop("chat_template") is not None  # the template itself is kilobytes of Jinja
        return {**doc, "bits_per_weight": round(self.bits_per_weight, 3)}


def read_facts(path: Path) -> ModelFacts:
    """The facts of the GGUF model at ``path`` (its header only; tensors are not read)."""
    return model_facts(read_header(path), Path(path))


def model_facts(header: GGUFHeader, path: Path) -> ModelFacts:
    """Facts from an already-parsed header (``path`` only names the file in errors)."""
    arch = header.architecture
    if arch is None:
        raise ValidationError(f"{path} has no general.architecture", hint="is it a llama.cpp model GGUF?")

    def number(name: str, default: int | None = None) -> int:
        key = f"{arch}.{name}"
        value = header.get(key, default)
        if isinstance(value, list) and value:  # per-layer values (e.g. OpenELM's head counts)
            value = max(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            if value is None:
                raise ValidationError(f"{path} lacks {key}", hint="not a transformer LLM GGUF")
            raise ValidationError(f"{path}: {key} is {value!r}, not a count", hint="the model's metadata is damaged; re-export it")
        return value

    n_embd, n_layer, n_head = number("embedding_length"), number("block_count"), number("attention.head_count")
    if not (n_embd and n_layer and n_head):
        raise ValidationError(f"{path}: {arch}.embedding_length, block_count and attention.head_count must be positive", hint="not a transformer LLM GGUF")
    head_dim = n_embd // n_head
    types = Counter(t.type_name for t in header.tensors)
    template = header.get(CHAT_TEMPLATE)
    name = header.get("general.name")
    return ModelFacts(
        arch=arch,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=number("attention.head_count_kv", n_head),
        head_dim_k=number("attention.key_length", head_dim),
        head_dim_v=number("attention.value_length", head_dim),
        n_ff=number("feed_forward_length", 4 * n_embd),
        n_vocab=header.array_lengths.get(TOKENS, 0),
        ctx_train=number("context_length", 0),
        n_params=sum(t.n_elements for t in header.tensors),
        weight_bytes=sum(t.n_bytes for t in header.tensors),
        file_type=_file_type_name(header.get("general.file_type"), types),
        tensor_types=dict(types),
        n_tensors=len(header.tensors),
        name=name if isinstance(name, str) else None,
        chat_template=template if isinstance(template, str) and template else None,
    )


def _file_type_name(code: object, types: Counter[str]) -> str:
    import gguf

    if isinstance(code, int) and not isinstance(code, bool):
        try:
            return gguf.LlamaFileType(code).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass  # a file type this gguf package does not know: fall back to the tensors
    return types.most_common(1)[0][0] if types else "unknown"
