"""Fixtures for the optimizer: a small llama GGUF that knows a Markov chain, its text, its variants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeship.optimize.bigram import Chain, write_chain_model
from edgeship.optimize.quantize import DEFAULT_TYPES, quantize
from edgeship.samples.llama import TinyLlama

# The foundation's CLI runner and throwaway workspace serve here too.
from tests.foundation.conftest import Cli, CliResult, cli, workspace  # noqa: F401

# Rows of 256 and 512 values: every tensor is K-quantizable (QK_K = 256), no fallback types.
SPEC = TinyLlama(n_embd=256, n_layer=2, n_head=4, n_head_kv=2, n_ff=512, n_ctx=512, name="chain-test")
CHAIN = Chain()


@pytest.fixture(scope="session")
def source_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_chain_model(tmp_path_factory.mktemp("source") / "chain.gguf", SPEC, CHAIN)


@pytest.fixture(scope="session")
def eval_text_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("text") / "eval.txt"
    path.write_text(CHAIN.sample(1000))
    return path


@pytest.fixture(scope="session")
def variants(source_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every default type, quantized once per test session by llama.cpp."""
    out = tmp_path_factory.mktemp("variants")
    return {t: quantize(source_model, out / f"chain.{t}.gguf", t, n_threads=2).path for t in DEFAULT_TYPES}


def write_imatrix(path: Path, model: Path) -> Path:
    """An importance matrix in llama-imatrix's GGUF layout: per weight, column sums and a count."""
    import gguf

    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), "imatrix")
    for t in gguf.GGUFReader(str(model)).tensors:
        if len(t.shape) == 2:
            writer.add_tensor(f"{t.name}.in_sum2", (rng.random(int(t.shape[0])) * 100).astype(np.float32))
            writer.add_tensor(f"{t.name}.counts", np.array([100.0], np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
