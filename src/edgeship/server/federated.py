"""Federated rounds on the server: pick a cohort, take device updates, aggregate, keep a candidate.

The server never trains and never signs: it checks each uploaded update (an edgeship delta
against the round's base model) and keeps only ``tuned - base`` of accepted ones; when every
cohort member has answered or the deadline passes it averages them (``learn.aggregate``)
into a candidate model file the operator pulls, reads, signs offline and rolls out.
Rounds advance lazily, whenever a device or the operator asks about the run.
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from edgeship.delta import apply_patch, read_stats
from edgeship.errors import ConflictError, EdgeshipError, NotFoundError, UsageError
from edgeship.learn.aggregate import AggregateOptions, Contribution, UpdateRejected, aggregate, check_update
from edgeship.learn.rounds import round_closes, round_outcome
from edgeship.learn.weights import tensor_delta, trainable_shapes, write_with_delta
from edgeship.release.manifest import ComponentKind, parse_ref
from edgeship.rollout.cohort import cohort_value
from edgeship.rollout.selector import Selector
from edgeship.server import strict_json
from edgeship.server.auth import DeviceIdentity
from edgeship.server.bases import release_manifest
from edgeship.server.models import Device, Event, FederatedRun, FederatedUpdate
from edgeship.server.repository import ServerRepository
from edgeship.server.storage import BlobStorage, StoredFile, blob_key
from edgeship.store.digest import Digest, hash_file

GROWTH_ALLOWANCE = 16 << 20  # bytes a tuned model may add to its base (metadata), beyond 10 %
METRIC_KEYS = ("loss_before", "loss_after", "metric_before", "metric_after", "steps", "seconds")


@dataclass(frozen=True)
class RunOptions:
    rounds: int
    min_participants: int
    local_steps: int
    clip_norm: float | None
    noise_multiplier: float
    max_norm: float
    deadline_s: float
    max_update_bytes: int
    cohort_size: int | None


def run_dir(data_dir: Path, run_id: str) -> Path:
    return data_dir / "federated" / run_id


def start(session: Session, repo: ServerRepository, storage: BlobStorage, data_dir: Path, release: str, target: str, opts: RunOptions) -> dict:
    name, version = parse_ref(release)
    if version is None:
        raise UsageError(f"{release!r} names no version", hint="give NAME@VERSION: every device must train the same base")
    entry = repo.find_release(name, version)
    models = [c for c in release_manifest(storage, entry).components if c.kind == ComponentKind.GGUF]
    if len(models) != 1:
        raise UsageError(f"{release} has {len(models)} GGUF models; federated rounds train exactly one", hint="start the run on a single-model release")
    digest = models[0].digest
    selector = Selector.parse(target)
    devices = session.scalars(select(Device).where(Device.decommissioned_at.is_(None)).order_by(Device.id)).all()
    cohort = [d.id for d in devices if selector.matches(d.id, d.tags)]
    run_id = "fed_" + secrets.token_hex(6)
    if opts.cohort_size is not None:
        # Picked like a rollout stage: the run's hash order, not the oldest devices every time.
        cohort = sorted(cohort, key=lambda d: cohort_value(run_id, d))[: opts.cohort_size]
    if len(cohort) < opts.min_participants:
        raise ConflictError(f"{len(cohort)} devices match {selector}, fewer than the {opts.min_participants} participants a round needs",
                            hint="widen --target or lower --min-participants")
    base = run_dir(data_dir, run_id) / "base.gguf"
    _materialize(storage, Digest.parse(digest), base)
    now = datetime.now(timezone.utc)
    run = FederatedRun(
        id=run_id, release_ref=f"{name}@{version}", release_id=entry["release_id"], base_digest=digest, target=str(selector),
        options=opts.__dict__, cohort={"devices": sorted(cohort)}, round=1, round_deadline=now + timedelta(seconds=opts.deadline_s),
        status="running", history={"rounds": []}, created_at=now,
    )
    session.add(run)
    session.flush()
    return describe(run)


def _materialize(storage: BlobStorage, digest: Digest, dest: Path) -> None:
    """A local copy of the base model: patches are applied to it and candidates written from it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    stored = storage.locate(blob_key(digest))
    if isinstance(stored, StoredFile):
        shutil.copyfile(stored.path, dest)
    else:
        dest.write_bytes(storage.read(blob_key(digest)))


def get_run(session: Session, run_id: str, *, lock: bool = False) -> FederatedRun:
    run = session.get(FederatedRun, run_id, with_for_update=lock)
    if run is None:
        raise NotFoundError(f"federated run {run_id[:40]} does not exist", hint="list runs with `edgeship federated status`")
    return run


def task_for(session: Session, data_dir: Path, device: DeviceIdentity) -> dict | None:
    """The round this device should train for now, or None."""
    # Locked: closing a round must happen once even when two server workers answer at the same time.
    runs = session.scalars(select(FederatedRun).where(FederatedRun.status == "running").order_by(FederatedRun.created_at).with_for_update()).all()
    for run in runs:
        advance(session, data_dir, run)
        if run.status != "running" or device.id not in run.cohort["devices"]:
            continue
        if _update_of(session, run, device.id) is not None:
            continue
        o = run.options
        return {
            "run": run.id, "round": run.round, "release": run.release_ref, "base_digest": run.base_digest,
            "local_steps": o["local_steps"], "max_update_bytes": o["max_update_bytes"],
            "deadline": run.round_deadline.isoformat(), "upload": f"/v1/devices/{device.id}/federated/{run.id}/{run.round}",
        }
    return None


def _update_of(session: Session, run: FederatedRun, device_id: str) -> FederatedUpdate | None:
    return session.scalars(select(FederatedUpdate).where(
        FederatedUpdate.run_id == run.id, FederatedUpdate.round == run.round, FederatedUpdate.device_id == device_id)).first()


def open_round(session: Session, data_dir: Path, device: DeviceIdentity, run_id: str, round_no: int) -> FederatedRun:
    """The run if this device may upload for ``round_no`` now, else the reason why not."""
    run = get_run(session, run_id, lock=True)
    advance(session, data_dir, run)
    if device.id not in run.cohort["devices"]:
        raise ConflictError(f"device {device.id} is not in the cohort of run {run.id}")
    if run.status != "running" or run.round != round_no:
        raise ConflictError(f"round {round_no} of run {run.id} is closed", hint="ask for the current task again")
    if _update_of(session, run, device.id) is not None:
        raise ConflictError(f"device {device.id} already sent its update for round {round_no}")
    return run


def receive(session: Session, data_dir: Path, device: DeviceIdentity, run: FederatedRun, patch: Path, samples: int, metrics: dict[str, Any]) -> dict:
    """Check an uploaded delta; keep ``tuned - base`` if it passes; record it and an event either way."""
    round_no = run.round
    work = run_dir(data_dir, run.id)
    base = work / "base.gguf"
    tuned = patch.with_suffix(".tuned")
    norm: float | None = None
    try:
        stats = read_stats(patch)
        if stats.source_digest != run.base_digest:
            raise UpdateRejected(f"the update is a delta against {stats.source_digest[:19]}…, not this round's base {run.base_digest[:19]}…",
                                 hint=f"train against {run.release_ref}")
        # A trainer may save other metadata than the base had, but a tuned model of the same
        # tensors is about the base's size: a delta expanding far beyond it is refused before it is applied.
        limit = base.stat().st_size + max(base.stat().st_size // 10, GROWTH_ALLOWANCE)
        if stats.target_size > limit:
            raise UpdateRejected(f"the updated model would be {stats.target_size} bytes, over {limit} for a {base.stat().st_size}-byte base",
                                 hint="train against the round's base model; tensors must keep their shapes and types")
        apply_patch(base, patch, tuned)
        delta = tensor_delta(base, tuned)
        norm = check_update(trainable_shapes(base), delta, samples, run.options["max_norm"])
        kept = work / f"round-{run.round}" / f"{device.id}.npz"
        kept.parent.mkdir(parents=True, exist_ok=True)
        np.savez(kept, **delta)
        status, reason = "accepted", ""
    except EdgeshipError as exc:  # a bad delta (DeltaError) or a bad update: recorded, never aggregated
        status, reason = "rejected", str(exc)[:500]
    finally:
        tuned.unlink(missing_ok=True)
    now = datetime.now(timezone.utc)
    size = patch.stat().st_size
    clean = {k: float(metrics[k]) for k in METRIC_KEYS if isinstance(metrics.get(k), (int, float))}
    session.add(FederatedUpdate(run_id=run.id, round=run.round, device_id=device.id, status=status, reason=reason, size=size,
                                samples=samples, norm=norm, metrics=clean, received_at=now))
    _event(session, device.id, f"fed-{run.id}-{run.round}", now,
           {"run": run.id, "round": run.round, "status": status, "reason": reason, "size": size, "samples": samples, "norm": norm})
    session.flush()
    advance(session, data_dir, run)
    return {"run": run.id, "round": round_no, "status": status, "reason": reason, "norm": norm}


def _event(session: Session, device_id: str, event_id: str, now: datetime, data: dict[str, Any]) -> None:
    session.add(Event(device_id=device_id, event_id=event_id, time=now, type="federated", state=None, release=None, data=data, received_at=now))


def advance(session: Session, data_dir: Path, run: FederatedRun, now: datetime | None = None) -> None:
    """Close the current round when every cohort member answered or its deadline passed."""
    now = now or datetime.now(timezone.utc)
    while run.status == "running":
        updates = session.scalars(select(FederatedUpdate).where(FederatedUpdate.run_id == run.id, FederatedUpdate.round == run.round).order_by(FederatedUpdate.id)).all()
        if not round_closes(len(run.cohort["devices"]), len(updates), now, run.round_deadline):
            return
        _close_round(data_dir, run, updates)
        if run.round >= run.options["rounds"]:
            run.status = "finished"
        else:
            run.round += 1
            run.round_deadline = now + timedelta(seconds=run.options["deadline_s"])


def _close_round(data_dir: Path, run: FederatedRun, updates: list[FederatedUpdate]) -> None:
    o = run.options
    accepted = [u for u in updates if u.status == "accepted"]
    work = run_dir(data_dir, run.id)
    outcome = round_outcome(len(run.cohort["devices"]), len(updates), len(accepted), o["min_participants"])
    entry: dict[str, Any] = {
        "round": run.round, "cohort": outcome.cohort, "received": outcome.received, "accepted": outcome.accepted,
        "rejected": outcome.rejected, "dropped": outcome.dropped,
        "update_bytes": [u.size for u in updates], "samples": sum(u.samples for u in accepted),
        "loss_before": _mean(accepted, "loss_before"), "loss_after": _mean(accepted, "loss_after"),
        "used": outcome.used, "reason": outcome.reason, "candidate": None,
    }
    if entry["used"]:
        contributions = []
        for u in accepted:
            with np.load(work / f"round-{run.round}" / f"{u.device_id}.npz") as f:
                contributions.append(Contribution({k: f[k] for k in f.files}, u.samples))
        mean = aggregate(contributions, AggregateOptions(o["clip_norm"], o["noise_multiplier"]))
        out = work / f"round-{run.round}.gguf"
        write_with_delta(work / "base.gguf", mean, out)
        entry["candidate"] = str(hash_file(out)[0])
    shutil.rmtree(work / f"round-{run.round}", ignore_errors=True)  # the kept deltas served their purpose
    run.history = {"rounds": [*run.history["rounds"], entry]}


def _mean(updates: list[FederatedUpdate], key: str) -> float | None:
    values = [u.metrics[key] for u in updates if key in u.metrics]
    return sum(values) / len(values) if values else None


def candidate(session: Session, data_dir: Path, run_id: str, round_no: int | None) -> tuple[Path, dict]:
    """The candidate model of a used round (default: the last one) and its round entry."""
    run = get_run(session, run_id)
    used = [r for r in run.history["rounds"] if r["used"] and (round_no is None or r["round"] == round_no)]
    if not used:
        raise NotFoundError(f"run {run.id} has no used round{'' if round_no is None else f' {round_no}'} yet",
                            hint="wait for a round with enough participants (`edgeship federated status`)")
    entry = used[-1]
    return run_dir(data_dir, run.id) / f"round-{entry['round']}.gguf", entry


def describe(run: FederatedRun) -> dict:
    return {
        "id": run.id, "release": run.release_ref, "base_digest": run.base_digest, "target": run.target, "status": run.status,
        "round": run.round, "round_deadline": run.round_deadline.isoformat(), "options": run.options,
        "cohort": run.cohort["devices"], "rounds": run.history["rounds"], "created_at": run.created_at.isoformat(),
    }


def list_runs(session: Session, data_dir: Path) -> list[dict]:
    runs = session.scalars(select(FederatedRun).order_by(FederatedRun.created_at.desc()).with_for_update()).all()
    for run in runs:
        advance(session, data_dir, run)
    return [describe(r) for r in runs]


def metrics_json(metrics_header: str | None) -> dict[str, Any]:
    """The device's training figures from the ``Edgeship-Metrics`` header (numbers only)."""
    if not metrics_header:
        return {}
    value = strict_json.loads(metrics_header, "the Edgeship-Metrics header")
    if not isinstance(value, dict):
        raise UsageError("the Edgeship-Metrics header is not a JSON object")
    return value
