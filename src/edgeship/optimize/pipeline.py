"""The whole GGUF run: quantize to each type, measure each variant, choose per profile."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from edgeship.optimize.evaluate import (
    Scores,
    compare,
    filler_tokens,
    measure_speed,
    score,
    tokenize_eval_text,
)
from edgeship.optimize.llamacpp import LoadedModel
from edgeship.formats import ModelFacts, read_facts
from edgeship.optimize.memory import estimate_memory
from edgeship.optimize.profiles import Profile
from edgeship.optimize.quantize import (
    QuantizeResult,
    TensorHook,
    parse_types,
    quantize,
    require_float_source,
)
from edgeship.optimize.report import Report, Variant
from edgeship.optimize.select import DEFAULT_HEADROOM, choose

SPEED_PROMPT = 128  # tokens in the timed prompt
SPEED_GENERATE = 32  # tokens generated for the generation speed


@dataclass
class Hooks:
    """How a run tells its caller what it is doing (the CLI draws progress bars)."""

    status: Callable[[str], None] = lambda text: None
    quantize_start: Callable[[str], None] = lambda qtype: None
    tensor: TensorHook = lambda done, total, name: None


def context_warnings(facts: ModelFacts, ctx: int) -> list[str]:
    if facts.ctx_train and ctx > facts.ctx_train:
        return [
            (
                f"context {ctx} is larger than the model's training context {facts.ctx_train}: "
                "memory is estimated for it, but quality past the training context is not what was measured"
            )
        ]
    return []


def optimize_gguf(
    source: Path,
    out_dir: Path,
    profiles: Sequence[Profile],
    *,
    types: Sequence[str] | None = None,
    imatrix: Path | None = None,
    ctx: int = 2048,
    eval_text: str | None = None,
    eval_ctx: int = 512,
    headroom: float = DEFAULT_HEADROOM,
    n_threads: int | None = None,
    hooks: Hooks | None = None,
) -> Report:
    hooks = hooks or Hooks()
    facts = read_facts(source)
    require_float_source(source, facts)  # before the evaluation, not after it
    qtypes = parse_types(",".join(types) if types else None)
    window = min(eval_ctx, ctx, facts.ctx_train or eval_ctx)
    out_dir.mkdir(parents=True, exist_ok=True)

    reference: Scores | None = None
    tokens: list[int] | None = None
    if eval_text is not None:
        hooks.status(f"scoring the text with the source model ({window}-token window)")
        with LoadedModel(source, window, n_threads=n_threads) as model:
            tokens = tokenize_eval_text(model, eval_text)
            reference = score(model, tokens, keep_logprobs=True)

    results: list[tuple[str, Path, QuantizeResult | None]] = [(facts.file_type, source, None)]
    for qtype in qtypes:
        hooks.quantize_start(qtype)
        target = out_dir / f"{source.stem}.{qtype}.gguf"
        result = quantize(source, target, qtype, n_threads=n_threads, imatrix=imatrix, on_tensor=hooks.tensor)
        results.append((qtype, result.path, result))

    variants = []
    for name, path, result in results:
        hooks.status(f"measuring {name}")
        variants.append(_measure(name, path, result, ctx, window, tokens, reference, n_threads))
    return Report(
        source=source,
        kind="gguf",
        ctx=ctx,
        headroom=headroom,
        profiles=list(profiles),
        variants=variants,
        choices=choose([v.candidate for v in variants], profiles, headroom),
        warnings=context_warnings(facts, ctx),
    )


def _measure(
    name: str,
    path: Path,
    result: QuantizeResult | None,
    ctx: int,
    window: int,
    tokens: list[int] | None,
    reference: Scores | None,
    n_threads: int | None,
) -> Variant:
    facts = read_facts(path)
    memory = estimate_memory(facts, ctx)
    with LoadedModel(path, window, n_threads=n_threads) as model:
        quality = compare(score(model, tokens, keep_logprobs=True), reference) if tokens else None
        prompt = tokens[:SPEED_PROMPT] if tokens else filler_tokens(model.n_vocab, SPEED_PROMPT, model.bos)
        speed = measure_speed(model, prompt, SPEED_GENERATE)
    metrics = {
        **asdict(speed),
        "top1_agreement": quality.top1_agreement if quality else None,
        "eval_tokens": quality.tokens if quality else 0,
        "tensor_types": facts.tensor_types,
        "source_bytes": result.source_bytes if result else None,
    }
    return Variant(
        name=name,
        path=path,
        source=result is None,
        file_bytes=path.stat().st_size,
        bits_per_weight=facts.bits_per_weight,
        memory=memory.total,
        memory_detail=memory.to_json(),
        quantize_seconds=result.seconds if result else None,
        kl_divergence=quality.kl_divergence if quality else None,
        perplexity=quality.perplexity if quality else None,
        metrics=metrics,
    )
