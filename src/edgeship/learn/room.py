"""Whether this device has room for a training job, decided before anything is written."""

from __future__ import annotations

from dataclasses import dataclass

from edgeship.errors import LearnError
from edgeship.store.fsutil import room_shortfall

# Full fine-tuning with AdamW holds weights, gradients and two moments: four copies.
TRAINING_COPIES = 4


@dataclass(frozen=True)
class Need:
    disk: int  # bytes the job writes: the tuned model and the patch
    memory: int  # bytes the trainer holds


def need_for(model_size: int) -> Need:
    return Need(disk=2 * model_size, memory=TRAINING_COPIES * model_size)


def check_room(need: Need, *, free_disk: int, memory_budget: int | None) -> None:
    """Refuse the job (one line, nothing written) when disk or the memory budget is short."""
    short = room_shortfall(need.disk, free_disk)
    if short:
        raise LearnError(f"no room to train: the job (the tuned model and its patch) {short}",
                         hint="free disk space or train a smaller model")
    if memory_budget is not None and need.memory > memory_budget:
        raise LearnError(f"no room to train: fine-tuning needs about {_mb(need.memory)} of memory, "
                         f"the budget is {_mb(memory_budget)}", hint="raise the device's memory budget")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
