"""The estimator against what llama.cpp really takes: RSS of a fresh process that loads the
model and fills the whole context (so every mmap'd weight page has been touched)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeship.optimize.evaluate import measure_rss
from edgeship.formats import read_facts
from edgeship.optimize.memory import estimate_memory

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
