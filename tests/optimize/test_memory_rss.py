"""The estimator against what llama.cpp really takes: RSS of a fresh process that loads the
model and fills the whole context (so every mmap'd weight page has been touched)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeship.optimize.evaluate import measure_rss
from edgeship.formats import read_facts
from edgeship.optimize.memory import estimate_memory

from .conftest import Cli

TOLERANCE = 0.15


@pytest.mark.slow
@pytest.mark.parametrize("qtype", ["F32", "Q8_0", "Q4_K_M", "Q2_K"])
@pytest.mark.parametrize("ctx", [300, 2048])
def test_estimate_within_15_percent_of_measured_rss(qtype: str, ctx: int, source_model: Path, variants: dict[str, Path]) -> None:
    path = source_model if qtype == "F32" else variants[qtype]
    estimate = estimate_memory(read_facts(path), ctx)
    measured = measure_rss(path, ctx, n_threads=2)
    assert measured.filled > measured.loaded > measured.before
    error = estimate.model_bytes / measured.model_bytes - 1
    assert abs(error) <= TOLERANCE, f"{qtype} ctx={ctx}: estimated {estimate.model_bytes}, measured {measured.model_bytes} ({error:+.1%})"


REAL_TOLERANCE = 0.10


@pytest.mark.slow
@pytest.mark.parametrize("ctx", [512, 2048])
def test_estimate_of_the_real_model_within_10_percent(ctx: int, real_gguf: Path, cli: Cli) -> None:
    """`edgeship estimate` on Gemma 3 270M Q4_K_M (262k vocabulary, sliding-window layers) against its real RSS."""
    r = cli("estimate", real_gguf, "--ctx", ctx, "--json")
    assert r.code == 0, r.err
    estimated = json.loads(r.out)["estimate"]["model_bytes"]
    measured = measure_rss(real_gguf, ctx, n_threads=2)
    error = estimated / measured.model_bytes - 1
    assert abs(error) <= REAL_TOLERANCE, f"ctx={ctx}: estimated {estimated}, measured {measured.model_bytes} ({error:+.1%})"
