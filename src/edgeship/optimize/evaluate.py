"""Measure a GGUF variant on this machine: quality on a text, speed, and real memory use.

Quality has two figures:
- perplexity of the text, with a sliding window (each window is ``ctx`` tokens, moves by
  half a window, and scores only tokens no earlier window scored, so every scored token
  sees at least half a window of context);
- KL divergence of the variant's next-token distribution from the source model's, at the
  same positions (what llama.cpp's ``perplexity --kl-divergence`` reports). It measures
  what quantization changed even when the text says little about the model's quality.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeship.errors import OptimizeError, UsageError
from edgeship.optimize.llamacpp import LoadedModel

MIN_EVAL_TOKENS = 256
# The source's log-probabilities are kept for the KL figure; above this many bytes
# (n_tokens x n_vocab x 2) they are not, and KL is left out.
MAX_REFERENCE_BYTES = 512 << 20


@dataclass(frozen=True)
class Scores:
    """Per scored token: the negative log-likelihood, and optionally all log-probabilities."""

    nll: np.ndarray  # float64, one per scored token
    logprobs: np.ndarray | None  # float16 (n_scored, n_vocab), for KL against another model

    @property
    def perplexity(self) -> float:
        return float(np.exp(self.nll.mean()))


@dataclass(frozen=True)
class Quality:
    perplexity: float
    kl_divergence: float | None  # mean KL(source || variant), nats per token
    top1_agreement: float | None  # share of positions where both predict the same token
    tokens: int


@dataclass(frozen=True)
class Speed:
    prompt_tokens_per_s: float
    generation_tokens_per_s: float
    prompt_tokens: int
    generated_tokens: int


@dataclass(frozen=True)
class MeasuredMemory:
    """RSS of a fresh process before loading, after loading, and after filling the context."""

    before: int
    loaded: int
    filled: int

    @property
    def model_bytes(self) -> int:
        return self.filled - self.before


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def tokenize_eval_text(model: LoadedModel, text: str) -> list[int]:
    tokens = model.tokenize(text)
    if len(tokens) < MIN_EVAL_TOKENS:
        raise UsageError(
            f"the evaluation text is too short: {len(tokens)} tokens, need at least {MIN_EVAL_TOKENS}",
            hint="give a longer --eval-text (a few pages of text like the model's real input)",
        )
    return tokens


def score(model: LoadedModel, tokens: Sequence[int], *, keep_logprobs: bool = False) -> Scores:
    """Score ``tokens`` with a sliding window of the model's context size."""
    n = len(tokens)
    window = min(model.n_ctx, n)
    stride = max(1, window // 2)
    keep = keep_logprobs and (n * model.n_vocab * 2) <= MAX_REFERENCE_BYTES
    nll: list[np.ndarray] = []
    kept: list[np.ndarray] = []
    scored_until = 1  # token 0 has nothing before it
    for start in range(0, n - 1, stride):
        end = min(start + window, n)
        model.reset()
        logits = model.decode(tokens[start:end])
        assert logits is not None
        # logits[j] predicts tokens[start + j + 1]; score targets scored_until..end-1.
        rows = slice(scored_until - start - 1, end - start - 1)
        logp = _log_softmax(logits[rows].astype(np.float64))
        targets = np.asarray(tokens[scored_until:end])
        nll.append(-logp[np.arange(len(targets)), targets])
        if keep:
            kept.append(logp.astype(np.float16))
        scored_until = end
        if end == n:
            break
    return Scores(np.concatenate(nll), np.concatenate(kept) if keep else None)


def compare(variant: Scores, reference: Scores | None) -> Quality:
    """Perplexity of the variant, and how far its predictions moved from the reference's."""
    kl = top1 = None
    if reference is not None and reference.logprobs is not None and variant.logprobs is not None:
        p_log = reference.logprobs.astype(np.float64)
        q_log = variant.logprobs.astype(np.float64)
        kl = float(np.mean(np.sum(np.exp(p_log) * (p_log - q_log), axis=1)))
        top1 = float(np.mean(p_log.argmax(axis=1) == q_log.argmax(axis=1)))
    return Quality(perplexity=variant.perplexity, kl_divergence=kl, top1_agreement=top1, tokens=len(variant.nll))


def measure_speed(model: LoadedModel, prompt: Sequence[int], generate: int = 32) -> Speed:
    """Prompt processing (one batch) and greedy generation speed, in tokens per second."""
    prompt = list(prompt[: max(1, model.n_ctx - generate)])
    # Warm up first: the first decode pays for page faults on the mmap'd weights.
    model.reset()
    model.decode(prompt[:8], logits=False)
    model.reset()
    t0 = time.perf_counter()
    model.decode(prompt, logits=False)
    t1 = time.perf_counter()
    pos = len(prompt)
    for _ in range(generate):
        token = int(model.next_logits().argmax())
        model.decode([token], pos, logits=False)
        pos += 1
    t2 = time.perf_counter()
    return Speed(
        prompt_tokens_per_s=len(prompt) / (t1 - t0),
        generation_tokens_per_s=generate / (t2 - t1) if generate else 0.0,
        prompt_tokens=len(prompt),
        generated_tokens=generate,
    )


def filler_tokens(n_vocab: int, count: int, bos: int) -> list[int]:
    """Deterministic tokens to fill a context when no text is given (skipping the first ids,
    which are usually control tokens)."""
    span = max(1, n_vocab - 3)
    return [bos] + [3 + (i * 7919) % span for i in range(count - 1)]


def measure_rss(path: Path, ctx: int, *, n_threads: int | None = None, timeout: float = 900) -> MeasuredMemory:
    """Load the model in a fresh Python process, fill a ``ctx``-token context, report its RSS.

    A child process so that nothing this process already holds (other models, numpy
    buffers, freed-but-kept heap) blurs the figure.
    """
    data = run_child("edgeship.optimize.evaluate:_rss_child", [str(path), str(ctx), str(n_threads or 0)], path.name, timeout)
    return MeasuredMemory(**data)


def run_child(entry: str, args: Sequence[str], what: str, timeout: float) -> dict[str, Any]:
    """Run ``entry`` ("module:function") in a fresh Python; it prints one JSON line last."""
    module, func = entry.split(":")
    argv = [sys.executable, "-c", f"from {module} import {func}; {func}()", *args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise OptimizeError(f"measuring the memory of {what} took over {timeout:.0f}s") from exc
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        raise OptimizeError(f"measuring the memory of {what} failed: {tail}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def current_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise OptimizeError("cannot read VmRSS from /proc/self/status (Linux only)")


def _rss_child() -> None:
    path, ctx, threads = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    from edgeship.optimize.llamacpp import bindings

    bindings()  # the libraries belong to the runtime base, not to the model
    before = current_rss()
    with LoadedModel(path, ctx, n_threads=threads or None) as model:
        loaded = current_rss()
        model.decode(filler_tokens(model.n_vocab, model.n_ctx, model.bos), logits=False)
        filled = current_rss()
    sys.stdout.write(json.dumps({"before": before, "loaded": loaded, "filled": filled}) + "\n")
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: llama.cpp's static destructors are not our business


def to_json(obj: Quality | Speed | MeasuredMemory | None) -> dict[str, Any] | None:
    return None if obj is None else asdict(obj)
