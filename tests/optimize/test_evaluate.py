"""Quality and speed of the variants, measured through llama.cpp's logits."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from edgeship.errors import UsageError
from edgeship.optimize.evaluate import compare, measure_speed, score, tokenize_eval_text
from edgeship.optimize.llamacpp import LoadedModel

from .conftest import CHAIN

CTX = 256


@pytest.fixture(scope="module")
def qualities(source_model: Path, variants: dict[str, Path], eval_text_file: Path) -> dict[str, object]:
    text = eval_text_file.read_text()
    with LoadedModel(source_model, CTX) as model:
        tokens = tokenize_eval_text(model, text)
        reference = score(model, tokens, keep_logprobs=True)
    out: dict[str, object] = {"F32": compare(reference, reference)}
    for qtype, path in variants.items():
        with LoadedModel(path, CTX) as model:
            out[qtype] = compare(score(model, tokens, keep_logprobs=True), reference)
    return out


def test_source_model_predicts_its_chain(qualities: dict) -> None:
    f32 = qualities["F32"]
    # near the chain's best possible perplexity (~3), far from a uniform guess over 259 tokens
    assert f32.perplexity == pytest.approx(math.exp(CHAIN.entropy_rate()), rel=0.1)
    assert f32.kl_divergence == pytest.approx(0.0, abs=1e-6)
    assert f32.top1_agreement == 1.0
    assert f32.tokens == 1 + 3 + 1000 - 1  # BOS, "▁" as 3 bytes, the letters; all but the first are scored


def test_quality_orders_sensibly(qualities: dict) -> None:
    ppl = {t: q.perplexity for t, q in qualities.items()}
    kl = {t: q.kl_divergence for t, q in qualities.items()}
    assert all(math.isfinite(p) for p in ppl.values())
    assert ppl["Q8_0"] == pytest.approx(ppl["F32"], rel=0.002)
    assert ppl["Q2_K"] > ppl["Q4_K_M"] > ppl["F32"] * 0.999
    assert ppl["Q2_K"] > ppl["Q8_0"] * 1.005
    # what quantization changed grows as the bits shrink
    assert kl["Q8_0"] < kl["Q6_K"] < kl["Q4_K_M"] < kl["Q3_K_M"] < kl["Q2_K"]
    assert kl["Q8_0"] < 1e-3 < kl["Q2_K"]


def test_short_windows_score_every_token_once(source_model: Path, eval_text_file: Path) -> None:
    with LoadedModel(source_model, 64) as model:
        tokens = tokenize_eval_text(model, eval_text_file.read_text())
        scores = score(model, tokens)
    assert len(scores.nll) == len(tokens) - 1 and scores.logprobs is None
    # a 64-token window sees less context than 256 but a bigram chain needs only one letter
    assert scores.perplexity == pytest.approx(math.exp(CHAIN.entropy_rate()), rel=0.1)


def test_eval_text_too_short(source_model: Path) -> None:
    with LoadedModel(source_model, 64) as model, pytest.raises(UsageError, match="too short: 12 tokens, need at least 256"):
        tokenize_eval_text(model, "abcdefgh")


def test_speed_is_measured(variants: dict[str, Path]) -> None:
    with LoadedModel(variants["Q4_0"], 128) as model:
        speed = measure_speed(model, list(range(3, 99)), generate=8)
    assert speed.prompt_tokens == 96 and speed.generated_tokens == 8
    assert speed.prompt_tokens_per_s > 0 and speed.generation_tokens_per_s > 0
