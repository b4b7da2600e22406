"""A fine-tuning job for a GGUF model on local JSONL text, with llama.cpp's trainer.

Before anything is written the job checks it has room; the trainer runs in a child
process and saves the tuned model under a ``.partial`` name; only when it succeeded is it
rewritten into a copy of the base (same layout) that becomes ``tuned.gguf``, so a crash or a kill leaves the base model and no half-written file.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeship.errors import LearnError
from edgeship.learn.data import Corpus, read_corpus
from edgeship.learn.room import check_room, need_for
from edgeship.learn.update import TrainingMetrics, WeightUpdate, make_update
from edgeship.learn.weights import tensor_delta, write_with_delta
from edgeship.store.fsutil import free_space

EVAL_CTX = 256
TRAINED = "trained.gguf.partial"  # what the trainer child saves


@dataclass(frozen=True)
class TrainOptions:
    epochs: int = 2
    learning_rate: float = 1e-3
    memory_budget: int | None = None  # bytes, from the device profile
    timeout: float = 3600.0  # seconds, from the maintenance window
    # Train only tensors whose name contains one of these (e.g. "ffn_down"); the rest stay
    # the base's bytes, so the delta carries just these. Empty: every tensor.
    tensors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Measured:
    train_loss: float
    held_out_perplexity: float


def fine_tune(base: Path, data_dir: Path, work_dir: Path, options: TrainOptions = TrainOptions()) -> WeightUpdate:
    """Train a copy of ``base`` on the text under ``data_dir``; the update lands in ``work_dir``."""
    base, work_dir = Path(base).resolve(), Path(work_dir).resolve()
    _require_f32(base)
    corpus = read_corpus(data_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    check_room(need_for(base.stat().st_size), free_disk=free_space(work_dir), memory_budget=options.memory_budget)
    train_tokens, held_tokens = _tokens(base, corpus)
    before = _measure(base, train_tokens, held_tokens)
    tuned = work_dir / "tuned.gguf"
    steps, seconds = _run_trainer(base, tuned, train_tokens, work_dir, options)
    after = _measure(tuned, train_tokens, held_tokens)
    metrics = TrainingMetrics(len(corpus.train), before.train_loss, after.train_loss,
                              before.held_out_perplexity, after.held_out_perplexity, steps, seconds)
    return make_update(base, tuned, work_dir / "update.delta", metrics)


def _require_f32(base: Path) -> None:
    from edgeship.formats import read_facts

    facts = read_facts(base)
    if set(facts.tensor_types) != {"F32"}:
        raise LearnError(f"{base.name} is {facts.file_type}: llama.cpp's trainer updates F32 weights in place, "
                         "and quantized or F16 tensors cannot take its steps",
                         hint="train an F32 export of the model and quantize the result")


def _tokens(model_path: Path, corpus: Corpus) -> tuple[np.ndarray, np.ndarray]:
    from edgeship.optimize.llamacpp import LoadedModel

    with LoadedModel(model_path, EVAL_CTX) as model:
        return (np.asarray(model.tokenize("\n".join(corpus.train)), np.int32),
                np.asarray(model.tokenize("\n".join(corpus.held_out)), np.int32))


def _measure(model_path: Path, train_tokens: np.ndarray, held_tokens: np.ndarray) -> Measured:
    from edgeship.optimize.evaluate import score
    from edgeship.optimize.llamacpp import LoadedModel

    with LoadedModel(model_path, EVAL_CTX) as model:
        loss = float(score(model, train_tokens.tolist()).nll.mean())
        return Measured(loss, score(model, held_tokens.tolist()).perplexity)


def _run_trainer(base: Path, tuned: Path, tokens: np.ndarray, work_dir: Path,
                 options: TrainOptions) -> tuple[int, float]:
    partial = work_dir / TRAINED  # llama.cpp's own layout; rewritten into the base's below
    tokens_path = work_dir / "tokens.npy"
    np.save(tokens_path, tokens)
    argv = [sys.executable, "-c", "from edgeship.learn.llama_opt import _train_child; _train_child()",
            str(base), str(partial), str(tokens_path), str(options.epochs), str(options.learning_rate), ",".join(options.tensors)]
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=options.timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        partial.unlink(missing_ok=True)
        raise LearnError(f"training took over {options.timeout:.0f}s and was stopped",
                         hint="give the job a longer window or less data") from exc
    finally:
        tokens_path.unlink(missing_ok=True)
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        raise LearnError(f"llama.cpp's trainer {_how_it_ended(proc.returncode)}; the base model is unchanged",
                         hint="this llama.cpp build cannot fine-tune this model; see docs/learning.md")
    # Same metadata and tensor offsets as the base: the delta stays tensor-aligned and small,
    # and the server can check the tuned file against its base byte for byte in size.
    write_with_delta(base, tensor_delta(base, partial), tuned)
    partial.unlink()
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return int(report["steps"]), time.monotonic() - started


def _how_it_ended(returncode: int) -> str:
    if returncode < 0:
        return f"crashed ({signal.Signals(-returncode).name})"
    return f"failed (exit code {returncode})"
