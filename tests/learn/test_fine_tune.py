"""Real fine-tuning of the tiny F32 llama with llama.cpp's trainer on real text."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from edgeship.delta import apply_patch
from edgeship.errors import LearnError
from edgeship.learn.job import read_state, run_job
from edgeship.learn.room import Need, check_room
from edgeship.learn.trainer import TrainOptions

ONE_EPOCH = TrainOptions(epochs=1, learning_rate=1e-3)


def sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_training_lowers_the_loss_and_ships_a_delta(base_model: Path, corpus: Path, tmp_path: Path) -> None:
    base_digest = sha256(base_model)
    update = run_job(base_model, corpus, tmp_path / "job", ONE_EPOCH)

    m = update.metrics
    assert m.samples == 8  # 10 records, every fifth held out
    assert m.steps > 0 and m.seconds > 0
    assert m.loss_after < m.loss_before
    assert m.metric_after < m.metric_before  # held-out perplexity
    assert sha256(base_model) == base_digest  # the served model is never written
    assert update.base_digest == base_digest
    assert update.model_size == base_model.stat().st_size  # the base's layout: servers check the size
    assert update.patch_size < update.model_size
    rebuilt = tmp_path / "rebuilt.gguf"
    assert apply_patch(base_model, update.patch, rebuilt) == update.tuned_digest
    # A second start finds the job done and returns the same update without training again.
    assert run_job(base_model, corpus, tmp_path / "job", ONE_EPOCH) == update


def test_a_job_without_room_stops_cleanly(base_model: Path, corpus: Path, tmp_path: Path) -> None:
    work = tmp_path / "job"
    with pytest.raises(LearnError, match="no room to train") as info:
        run_job(base_model, corpus, work, TrainOptions(memory_budget=base_model.stat().st_size))
    assert "\n" not in str(info.value)
    state = read_state(work)
    assert state is not None and state.phase == "failed" and "memory" in (state.reason or "")
    assert sorted(p.name for p in work.iterdir()) == ["job.json"]  # nothing half-written


def test_room_counts_disk_and_memory() -> None:
    need = Need(disk=2_000, memory=4_000)
    check_room(need, free_disk=2_000, memory_budget=4_000)
    check_room(need, free_disk=2_000, memory_budget=None)
    with pytest.raises(LearnError, match="is free"):
        check_room(need, free_disk=1_999, memory_budget=None)
    with pytest.raises(LearnError, match="budget is"):
        check_room(need, free_disk=10_000, memory_budget=3_999)


def test_bad_training_data_is_one_line(base_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.jsonl").write_text('{"text": "fine"}\n["not", "an", "object"]\n')
    with pytest.raises(LearnError, match=r"a.jsonl line 2 is not a JSON object") as info:
        run_job(base_model, data, tmp_path / "job", ONE_EPOCH)
    assert "\n" not in str(info.value)


def test_a_quantized_model_is_refused_before_any_work(base_model: Path, corpus: Path, tmp_path: Path) -> None:
    from edgeship.optimize.quantize import quantize

    quantized = tmp_path / "q8.gguf"
    quantize(base_model, quantized, "Q8_0")
    with pytest.raises(LearnError, match="is Q8_0: llama.cpp's trainer updates F32 weights"):
        run_job(quantized, corpus, tmp_path / "job", ONE_EPOCH)
