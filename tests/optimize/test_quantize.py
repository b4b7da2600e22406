"""llama.cpp's quantizer on the generated F32 model: every default type loads and runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeship.errors import OptimizeError, UsageError
from edgeship.optimize.llamacpp import LoadedModel
from edgeship.formats import read_facts
from edgeship.optimize.quantize import DEFAULT_TYPES, parse_types, quantize

from .conftest import write_imatrix

# What each file type stores most of its weights as (llama.cpp mixes in others).
MAIN_TENSOR_TYPE = {"Q8_0": "Q8_0", "Q6_K": "Q6_K", "Q5_K_M": "Q5_K", "Q4_K_M": "Q4_K", "Q4_0": "Q4_0", "Q3_K_M": "Q3_K", "Q2_K": "Q2_K"}  # fmt: skip


def test_every_default_type_is_smaller_in_order_and_runs(source_model: Path, variants: dict[str, Path]) -> None:
    sizes = [variants[t].stat().st_size for t in DEFAULT_TYPES]
    assert sizes[0] < source_model.stat().st_size / 3  # 8.5 bits against 32
    assert sizes[-1] == min(sizes)
    for qtype, path in variants.items():
        facts = read_facts(path)
        assert facts.file_type == qtype
        assert MAIN_TENSOR_TYPE[qtype] in facts.tensor_types
        with LoadedModel(path, 64) as model:
            logits = model.decode(model.tokenize("abcabc"))
            assert logits is not None and np.isfinite(logits).all()


def test_progress_reports_every_tensor(source_model: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, int, str]] = []
    result = quantize(source_model, tmp_path / "q.gguf", "q4_0", on_tensor=lambda d, n, name: seen.append((d, n, name)))
    n_tensors = sum(read_facts(source_model).tensor_types.values())
    assert [d for d, _, _ in seen] == list(range(1, n_tensors + 1))
    assert {n for _, n, _ in seen} == {n_tensors}
    assert "token_embd.weight" in {name for _, _, name in seen}
    assert result.qtype == "Q4_0" and result.mb_per_s > 0
    assert not (tmp_path / "q.gguf.partial").exists()


def test_rows_that_are_not_multiples_of_256_get_llama_cpps_fallback(tmp_path: Path) -> None:
    from edgeship.samples.llama import TinyLlama, write_tiny_llama

    narrow = write_tiny_llama(tmp_path / "narrow.gguf", TinyLlama(n_embd=64, n_ff=128))
    result = quantize(narrow, tmp_path / "narrow.Q4_K_M.gguf", "Q4_K_M")
    assert "Q4_K" not in result.tensor_types  # 64-wide rows cannot hold a 256-value K block
    with LoadedModel(result.path, 32) as model:
        assert model.decode([1, 5, 6]) is not None


def test_an_already_quantized_source_is_refused(variants: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="already quantized \\(Q8_0\\)") as info:
        quantize(variants["Q8_0"], tmp_path / "again.gguf", "Q4_0")
    assert "F32, F16 or BF16" in (info.value.hint or "")
    assert not (tmp_path / "again.gguf").exists()


def test_type_names() -> None:
    assert parse_types(None) == list(DEFAULT_TYPES)
    assert parse_types("q4_k_m, Q8_0,q4_k_m") == ["Q4_K_M", "Q8_0"]
    with pytest.raises(UsageError, match="unknown quantization types: Q9_X, FP4"):
        parse_types("Q9_X,fp4")


@pytest.mark.parametrize(("qtype", "reason"), [("NVFP4", "invalid output file type"), ("IQ2_XXS", "requires an imatrix")])
def test_a_type_llama_cpp_rejects_is_a_clear_error(qtype: str, reason: str, source_model: Path, tmp_path: Path) -> None:
    with pytest.raises(OptimizeError, match=f"llama.cpp refused to quantize chain.gguf to {qtype}: .*{reason}"):
        quantize(source_model, tmp_path / "x.gguf", qtype)
    assert list(tmp_path.iterdir()) == []


def test_an_importance_matrix_reaches_llama_cpp(source_model: Path, tmp_path: Path) -> None:
    imatrix = write_imatrix(tmp_path / "imatrix.gguf", source_model)
    # IQ2_XXS is refused without an importance matrix (see above) and made with one.
    result = quantize(source_model, tmp_path / "iq2.gguf", "IQ2_XXS", imatrix=imatrix)
    assert "IQ2_XXS" in result.tensor_types
    with LoadedModel(result.path, 32) as model:
        logits = model.decode([1, 5, 6])
        assert logits is not None and np.isfinite(logits).all()
    with pytest.raises(UsageError, match="no importance data"):
        quantize(source_model, tmp_path / "x.gguf", "Q4_0", imatrix=source_model)
