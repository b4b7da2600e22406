"""kill -9 during training: the next start ends on a complete old or new state, never half."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeship.errors import LearnError
from edgeship.learn.job import read_state, run_job
from edgeship.learn.trainer import TrainOptions
from tests.learn.conftest import write_corpus
from tests.learn.test_fine_tune import sha256

OPTIONS = TrainOptions(epochs=1)


def trainers(work: Path) -> list[int]:
    """Pids of llama.cpp trainer processes working for the job in ``work``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"_train_child" in part for part in cmdline) and any(str(work).encode() in p for p in cmdline):
            found.append(int(proc.name))
    return found


def wait_for(predicate, what: str, timeout: float = 120.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def start_job(base: Path, data: Path, work: Path) -> subprocess.Popen[bytes]:
    code = ("import sys; from pathlib import Path; from edgeship.learn.job import run_job; "
            "from edgeship.learn.trainer import TrainOptions; "
            "run_job(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), TrainOptions(epochs=1))")
    return subprocess.Popen([sys.executable, "-c", code, str(base), str(data), str(work)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_kill_9_of_the_job_mid_training_resumes_cleanly(base_model: Path, tmp_path: Path) -> None:
    data, work = write_corpus(tmp_path / "data", 10), (tmp_path / "job").resolve()
    base_digest = sha256(base_model)
    job = start_job(base_model, data, work)
    try:
        trainer = wait_for(lambda: trainers(work), "the trainer to start")[0]
        time.sleep(0.5)
        os.kill(job.pid, signal.SIGKILL)
        job.wait(timeout=30)
    finally:
        job.kill()
    # The trainer dies with the job: no orphan keeps writing.
    wait_for(lambda: not Path(f"/proc/{trainer}").exists() or "Z" in Path(f"/proc/{trainer}/stat").read_text().split()[2],
             "the orphaned trainer to die", timeout=10)
    state = read_state(work)
    assert state is not None and state.phase == "training" and state.attempts == 1
    leftovers = sorted(p.name for p in work.iterdir() if not p.name.startswith("."))
    assert leftovers == ["job.json", "tokens.npy"]  # no model written, whole or half
    assert sha256(base_model) == base_digest

    update = run_job(base_model, data, work, OPTIONS)  # the next start trains again and finishes
    assert update.metrics.loss_after < update.metrics.loss_before
    state = read_state(work)
    assert state is not None and state.phase == "done" and state.attempts == 2
    assert sorted(p.name for p in work.iterdir() if not p.name.startswith(".")) == ["job.json", "update.delta"]


def test_a_killed_trainer_fails_the_job_clearly(base_model: Path, tmp_path: Path) -> None:
    data, work = write_corpus(tmp_path / "data", 10), (tmp_path / "job").resolve()
    job = start_job(base_model, data, work)
    try:
        trainer = wait_for(lambda: trainers(work), "the trainer to start")[0]
        os.kill(trainer, signal.SIGKILL)
        assert job.wait(timeout=60) != 0
    finally:
        job.kill()
    state = read_state(work)
    assert state is not None and state.phase == "failed" and "SIGKILL" in (state.reason or "")
    assert sorted(p.name for p in work.iterdir() if not p.name.startswith(".")) == ["job.json"]
    with pytest.raises(LearnError, match="failed earlier"):
        run_job(base_model, data, work, OPTIONS)
