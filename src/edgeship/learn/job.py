"""A journaled training job: after a crash or kill -9 the next start finishes it or says why not.

The journal (``job.json``, replaced atomically) holds the job's phase:

- ``training``: started; nothing final written yet. A start that finds this phase drops
  the leftovers (``.partial`` files, the token file) and trains again from the base
  model, up to ``MAX_ATTEMPTS`` times, then fails the job.
- ``done``: ``update.delta`` is complete and the journal holds its metrics.
- ``failed``: the job stopped for the reason recorded; it is not retried.

The base model is only ever read, so every state has the old model whole.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeship.errors import LearnError
from edgeship.learn.trainer import TrainOptions, fine_tune
from edgeship.learn.update import TrainingMetrics, WeightUpdate
from edgeship.store.fsutil import sweep_temps, write_atomic

MAX_ATTEMPTS = 3
JOURNAL = "job.json"
LEFTOVERS = ("trained.gguf.partial", "tuned.gguf.partial", "tuned.gguf", "tokens.npy")


@dataclass(frozen=True)
class JobState:
    phase: str  # training | done | failed
    attempts: int = 0
    reason: str | None = None
    update: dict[str, Any] | None = None


def read_state(work_dir: Path) -> JobState | None:
    try:
        return JobState(**json.loads((work_dir / JOURNAL).read_bytes()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        raise LearnError(f"the training journal {work_dir / JOURNAL} is damaged",
                         hint="delete the job's directory to start the job over") from exc


def run_job(base: Path, data_dir: Path, work_dir: Path, options: TrainOptions = TrainOptions()) -> WeightUpdate:
    """Run (or finish) the job whose files live in ``work_dir``; returns its weight update."""
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    state = read_state(work_dir) or JobState("training")
    if state.phase == "done" and state.update is not None:
        return _update_from(state.update)
    if state.phase == "failed":
        raise LearnError(f"the training job failed earlier: {state.reason}", hint="order a new job")
    _drop_leftovers(work_dir)
    if state.attempts >= MAX_ATTEMPTS:
        return _fail(work_dir, state, f"it was interrupted {state.attempts} times")
    _write(work_dir, JobState("training", state.attempts + 1))
    try:
        update = fine_tune(base, data_dir, work_dir, options)
    except LearnError as exc:
        return _fail(work_dir, state, exc.message, exc)
    (work_dir / "tuned.gguf").unlink()  # the delta carries it; the base stays the served model
    _write(work_dir, JobState("done", state.attempts + 1, update=update.to_dict()))
    return update


def _fail(work_dir: Path, state: JobState, reason: str, cause: LearnError | None = None) -> WeightUpdate:
    _drop_leftovers(work_dir)
    _write(work_dir, JobState("failed", state.attempts, reason=reason))
    raise LearnError(f"the training job failed: {reason}", hint=cause.hint if cause else "order a new job") from cause


def _drop_leftovers(work_dir: Path) -> None:
    for name in LEFTOVERS:
        (work_dir / name).unlink(missing_ok=True)
    sweep_temps(work_dir)


def _write(work_dir: Path, state: JobState) -> None:
    write_atomic(work_dir / JOURNAL, json.dumps(asdict(state)).encode())


def _update_from(data: dict[str, Any]) -> WeightUpdate:
    return WeightUpdate(**{**data, "patch": Path(data["patch"]), "metrics": TrainingMetrics(**data["metrics"])})
