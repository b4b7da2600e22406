"""Taking part in federated rounds: train on local text against the installed base, send the delta.

Only a device started with ``--learn-data`` takes part. The task names the base model by
digest; the device trains only if its current release carries that exact file, so it never
trains (or runs) anything unsigned. The training job is journaled (``learn.job``): a kill
in the middle resumes or fails cleanly at the next round. What leaves the device is the
delta and the job's figures, never the text.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from edgeship.agent.api import DeviceClient
from edgeship.agent.store import CURRENT, DeviceStore
from edgeship.release.manifest import ComponentKind

log = logging.getLogger(__name__)


def installed_base(store: DeviceStore, digest: str) -> Path | None:
    """The current release's GGUF file with this digest, if the device runs it."""
    current = store.link(CURRENT)
    if current is None:
        return None
    for c in store.manifest(current).components:
        if c.kind == ComponentKind.GGUF and c.digest == digest:
            return store.release_dir(current) / c.path
    return None


def take_part(api: DeviceClient, store: DeviceStore, learn_data: Path, work_root: Path) -> dict[str, Any] | None:
    """Train and upload for the open round, if there is one for this device; the server's verdict."""
    task = api.federated_task()
    _drop_stale(work_root, task)
    if task is None:
        return None
    base = installed_base(store, task["base_digest"])
    if base is None:
        log.info("federated run %s trains %s, which this device does not run: not taking part", task["run"], task.get("release"))
        return None
    from edgeship.learn.job import run_job  # only devices that train load the trainer
    from edgeship.learn.trainer import TrainOptions

    # llama.cpp's trainer runs whole epochs over the local text: a round's local steps are epochs.
    update = run_job(base, learn_data, _work_dir(work_root, task), TrainOptions(epochs=int(task.get("local_steps", 1))))
    m = update.metrics
    metrics = {"loss_before": m.loss_before, "loss_after": m.loss_after, "metric_before": m.metric_before,
               "metric_after": m.metric_after, "steps": m.steps, "seconds": m.seconds}
    verdict = api.send_update(task["upload"], update.patch, m.samples, metrics)
    shutil.rmtree(_work_dir(work_root, task), ignore_errors=True)  # answered: accepted or rejected, never resent
    log.info("federated run %s round %s: update %s", task["run"], task.get("round"), verdict.get("status"))
    return verdict


def _work_dir(work_root: Path, task: dict[str, Any]) -> Path:
    return work_root / f"{task['run']}-{int(task.get('round', 0))}"


def _drop_stale(work_root: Path, task: dict[str, Any] | None) -> None:
    """Jobs of rounds that closed (the device was too late, or the server went away) are dropped."""
    keep = _work_dir(work_root, task).name if task else None
    if work_root.is_dir():
        for d in work_root.iterdir():
            if d.name != keep:
                shutil.rmtree(d, ignore_errors=True)
