"""Rollouts on the server: store them, let the engine decide, materialize each device's answer.

The engine (``edgeship.rollout``) is pure; this module gives it the fleet from the
database and writes back what it decided: the rollout's new state in ``rollouts`` and one
``rollout_assignments`` row per device that should install something, which is all that
check-in reads. A rollout's row beats a plain ``edgeship assign`` order; when two rollouts
want the same device, the newer one wins.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from edgeship.errors import ConflictError, NotFoundError, RolloutError, UsageError
from edgeship.release.manifest import Manifest, Requirements, parse_ref
from edgeship.rollout import (
    Assignment,
    AssignmentReason,
    Decision,
    Rollout,
    RolloutEvent,
    RolloutPolicy,
    RolloutState,
    RolloutStatus,
    Selector,
    StageCount,
    Tally,
    abort,
    decide,
    decide_tally,
    pause,
    promote,
    reordered,
    resume,
    row_key,
)
from edgeship.rollout.codec import rollout_from_dict, rollout_to_dict
from edgeship.server import rollout_schemas as schemas
from edgeship.server import push, webhooks
from edgeship.server.bases import release_manifest
from edgeship.server.credentials import new_id
from edgeship.server.models import Device, RolloutAssignment, RolloutRecord
from edgeship.server.reports import device_views
from edgeship.server.repository import ServerRepository
from edgeship.server.storage import BlobStorage
from edgeship.trust.targets import rollback_versions

ROLLOUT, EXPERIMENT = "rollout", "experiment"
# State changes operators are told about by webhook.
NOTIFY = frozenset({RolloutStatus.PAUSED, RolloutStatus.ABORTED, RolloutStatus.COMPLETED})
_NOTHING = Assignment(AssignmentReason.NOT_TARGETED)
_DONE = {"pause": "paused", "resume": "resumed", "abort": "aborted", "promote": "promoted"}


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def find_release(repo: ServerRepository, ref: str) -> dict[str, Any]:
    """The signed release record for ``name@version``, or for ``name``'s newest version."""
    name, version = parse_ref(ref)
    version = version or repo.latest_version(name)
    if version is None:
        raise NotFoundError(f"no release named {name} is published on this server", hint="push it with `edgeship release push --server URL`")
    return repo.find_release(name, version)


def ref_of(entry: Mapping[str, Any]) -> str:
    return f"{entry['name']}@{entry['version']}"


def target_selector(target: str | None, device_ids: list[str], session: Session) -> Selector:
    """``--target k=v,…`` or ``--device ID…`` (checked to exist), never both; neither: the fleet."""
    if target and device_ids:
        raise UsageError("pass --target or --device, not both", hint="a selector can name devices itself: id=dev_1,id=dev_2")
    if not device_ids:
        return Selector.parse(target)
    unknown = [d for d in device_ids if session.get(Device, d) is None]
    if unknown:
        raise NotFoundError(f"no device {', '.join(unknown[:5])}", hint="`edgeship device list` shows enrolled devices")
    return Selector.parse(",".join(f"id={d}" for d in device_ids))


def _requirements(storage: BlobStorage, entry: Mapping[str, Any]) -> Requirements:
    return release_manifest(storage, entry).requirements


def _rollback_release(repo: ServerRepository, entry: Mapping[str, Any], version: str | None) -> dict | None:
    """The release an automatic rollback orders devices back to: one the operator signed for it."""
    allowed = rollback_versions(entry)
    if version is None:
        return repo.find_release(entry["name"], entry["rollback_to"]) if entry.get("rollback_to") else None
    if version not in allowed:
        raise UsageError(
            f"{ref_of(entry)} may roll back only to {', '.join(allowed) or 'nothing'}, not {version}",
            hint="devices accept only the rollback versions signed at push time",
        )
    return repo.find_release(entry["name"], version)


def start(session: Session, repo: ServerRepository, storage: BlobStorage, req: schemas.RolloutCreate, now: float) -> schemas.RolloutOut:
    entry = find_release(repo, req.release)
    previous = _rollback_release(repo, entry, req.rollback_to)
    selector = target_selector(req.target, req.device_ids, session)
    live = session.scalars(select(RolloutRecord).where(RolloutRecord.live, RolloutRecord.kind == ROLLOUT)).all()
    for other in (r for r in live if parse_ref(r.release_ref)[0] == entry["name"]):
        if not RolloutStatus(other.status).is_final:
            raise ConflictError(
                f"rollout {other.id} of {other.release_ref} is still {other.status}",
                hint=f"wait for it, or `edgeship rollout abort {other.id}` first",
            )
        other.live = False  # an aborted rollout's rollback watch ends when a new rollout of the name begins
    try:
        policy = RolloutPolicy.from_options(
            stages=req.stages, bake=req.bake, max_failure=req.max_failure, pilot=req.pilot or None,
            window=req.window, notice=req.notice, on_fail=req.on_fail,
        )
        rollout = Rollout(
            id=new_id("ro"),
            release=entry["release_id"],
            previous_release=previous["release_id"] if previous else None,
            release_ref=ref_of(entry),
            requirements=_requirements(storage, entry),
            target=selector,
            policy=policy,
            state=RolloutState(since=now, ordered_since=now),
        )
    except RolloutError as exc:
        # Bad plans are the operator's input, not a conflict with stored state.
        raise UsageError(exc.message, hint=exc.hint) from exc
    record = RolloutRecord(
        id=rollout.id,
        kind=ROLLOUT,
        release_ref=rollout.release_ref,
        release_id=rollout.release,
        previous_ref=ref_of(previous) if previous else None,
        previous_release_id=rollout.previous_release,
        target=str(selector),
        status=rollout.state.status.value,
        live=True,
        document=rollout_to_dict(rollout),
        summary={},
        created_at=utc(now),
        updated_at=utc(now),
    )
    session.add(record)
    session.flush()
    evaluate(session, record, now)
    return rollout_out(record, now)


def get_record(session: Session, rollout_id: str, kind: str = ROLLOUT, *, lock: bool = False) -> RolloutRecord:
    query = select(RolloutRecord).where(RolloutRecord.id == rollout_id, RolloutRecord.kind == kind)
    # FOR UPDATE: two server instances (or the job and an operator) never decide one rollout at once.
    record = session.scalars(query.with_for_update() if lock else query).first()
    if record is None:
        raise NotFoundError(f"no {kind} {rollout_id[:40]}", hint=f"`edgeship {kind} list` shows their IDs")
    return record


def list_rollouts(session: Session, now: float, include_finished: bool = True) -> list[schemas.RolloutOut]:
    query = select(RolloutRecord).where(RolloutRecord.kind == ROLLOUT).order_by(RolloutRecord.created_at.desc())
    if not include_finished:
        query = query.where(RolloutRecord.live)
    return [rollout_out(r, now) for r in session.scalars(query)]


def act(session: Session, rollout_id: str, action: str, req: schemas.RolloutAction, now: float) -> schemas.RolloutOut:
    """An operator's pause, resume, abort or promote; the rollout is re-decided at once."""
    record = get_record(session, rollout_id, lock=True)
    rollout = rollout_from_dict(record.document)
    if action not in _DONE:
        raise NotFoundError(f"no rollout action {action!r}", hint="use pause, resume, abort or promote")
    try:
        if action == "pause":
            changed = pause(rollout, now, req.reason or "paused by operator")
        elif action == "resume":
            changed = resume(rollout, now)
        elif action == "abort":
            changed = abort(rollout, now, req.reason or "aborted by operator", rollback=req.rollback)
        else:
            changed = promote(rollout, now)
    except RolloutError as exc:
        raise ConflictError(exc.message, hint=exc.hint) from exc
    state = changed.state
    phase = changed.policy.phases[state.phase].name
    message = f"{_DONE[action]} by operator" + (f": {req.reason}" if req.reason else "")
    if action == "abort" and state.rollback:
        message += ", rolling back"
    record.document = rollout_to_dict(changed)
    _notify(session, record, [RolloutEvent(now, state.status, phase, message)])
    evaluate(session, record, now)
    return rollout_out(record, now)


def evaluate(
    session: Session, record: RolloutRecord, now: float, tally: Tally | None = None, changed: Collection[str] | None = None
) -> tuple[Decision, list[str]]:
    """Decide the rollout against the fleet as of ``now``; store the state, the devices' rows, the notifications.

    The fleet comes from ``tally`` (the job keeps one per rollout), else it is read in
    ``session``. ``changed`` (with ``tally``): the devices whose rows may be out of date
    under the stored state (their report changed, or another rollout freed their row); then
    only their rows are looked at, and those of the devices whose order the new state
    changes. Every stored state comes with rows that match it, so no other row can be wrong.
    Returns the decision and the devices whose row this rollout withdrew.
    """
    rollout = rollout_from_dict(record.document)
    if tally is None:
        decision = decide(rollout, device_views(session), now)
    else:
        decision = decide_tally(rollout, tally, now)
        if changed is not None and decision.rollout.state != rollout.state:
            changed = set(changed) | reordered(tally, rollout, decision.rollout)
    state = decision.rollout.state
    record.document = rollout_to_dict(decision.rollout)
    record.status = state.status.value
    record.summary = {**decision.summary(), "evaluated_at": now}
    # Finished rollouts keep their rows (devices keep what they got) but cost no more ticks.
    # An abort with rollback stays live until the next rollout of the name: a device may
    # install the release in the same agent round as it was told to, or come back online
    # with it weeks later, and must still be ordered back.
    record.live = not state.status.is_final or state.rollback
    record.updated_at = utc(now)
    withdrawn = materialize(session, record, decision.assignments, {rollout.release: record.release_ref, **_previous(record)}, changed)
    _notify(session, record, decision.events)
    return decision, withdrawn


def _previous(record: RolloutRecord) -> dict[str, str]:
    return {record.previous_release_id: record.previous_ref} if record.previous_release_id and record.previous_ref else {}


def _notify(session: Session, record: RolloutRecord, events: tuple[RolloutEvent, ...] | list[RolloutEvent]) -> None:
    for e in events:
        if e.status in NOTIFY:
            webhooks.enqueue(
                session,
                {
                    "type": f"rollout.{e.status.value}",
                    "rollout": record.id,
                    "release": record.release_ref,
                    "status": e.status.value,
                    "phase": e.phase,
                    "message": e.message,
                    "at": utc(e.at).isoformat(),
                },
            )


_RA = RolloutAssignment.__table__
_ROW_FIELDS = ("rollout_id", "release_name", "release_version", "release_id", "rollback", "window", "notice_s")
_CHUNK = 500  # device IDs per DELETE … IN (…): below every backend's bound-parameter limit


def materialize(
    session: Session, record: RolloutRecord, assignments: Mapping[str, Assignment], refs: Mapping[str, str],
    only: Collection[str] | None = None,
) -> list[str]:
    """Make the rollout's ``rollout_assignments`` rows match ``assignments`` (for the devices in ``only``, if given).

    Only devices told to install something get a row; a device without one falls back to
    plain assignment orders. A row of a newer rollout is left alone. Plain rows rather than
    ORM objects, and only the changes written: without ``only`` this runs for the whole fleet.
    Returns the devices whose row it deleted: an older rollout may want them now.
    """
    owners = dict(session.execute(select(RolloutRecord.id, RolloutRecord.created_at)).all())
    rows = select(_RA.c.device_id, *(_RA.c[f] for f in _ROW_FIELDS))
    if only is None:
        current = {r.device_id: tuple(r[1:]) for r in session.execute(rows)}
        wanted: Iterable[tuple[str, Assignment]] = assignments.items()
    else:
        ids = sorted(only)
        current = {}
        for i in range(0, len(ids), _CHUNK):
            current.update((r.device_id, tuple(r[1:])) for r in session.execute(rows.where(_RA.c.device_id.in_(ids[i : i + _CHUNK]))))
        wanted = ((d, assignments.get(d, _NOTHING)) for d in ids)
    answers: dict[tuple[str, bool, object, float], tuple[object, ...]] = {}
    inserts, updates = [], []
    for device_id, a in wanted:
        if a.release is None:
            continue
        have = current.get(device_id)
        if have is not None and have[0] != record.id and owners[str(have[0])] > record.created_at:
            continue
        key = row_key(a)
        values = answers.get(key)
        if values is None:  # a handful of distinct answers: build each once
            name, version = parse_ref(refs[a.release])
            window = a.window.as_dict() if a.window else None
            values = answers[key] = (record.id, name, version or "", a.release, a.rollback, window, int(a.notice))
        if have is None:
            inserts.append({"device_id": device_id, **dict(zip(_ROW_FIELDS, values))})
        elif have != values:
            updates.append({"b_device_id": device_id, **dict(zip(_ROW_FIELDS, values))})
        else:
            continue
        push.device_changed(session, device_id, "rollback" if a.rollback else record.kind, release=f"{values[1]}@{values[2]}", rollout=record.id)
    stale = [d for d, have in current.items() if have[0] == record.id and assignments.get(d, _NOTHING).release is None]
    for device_id in stale:  # back to plain assignment orders, or to nothing
        push.device_changed(session, device_id, "withdrawn", rollout=record.id)
    for i in range(0, len(stale), _CHUNK):
        session.execute(delete(_RA).where(_RA.c.device_id.in_(stale[i : i + _CHUNK])))
    if inserts:
        session.execute(insert(_RA), inserts)
    if updates:
        session.execute(
            update(_RA).where(_RA.c.device_id == bindparam("b_device_id")).values({f: bindparam(f) for f in _ROW_FIELDS}),
            updates,
        )
    return stale


def rollout_out(record: RolloutRecord, now: float) -> schemas.RolloutOut:
    rollout = rollout_from_dict(record.document)
    summary = record.summary
    evaluated = summary.get("evaluated_at")
    stages = []
    for s in summary.get("stages", []):
        # Stored at the last evaluation; the bake clock kept running since.
        left = s["bake_left"]
        stages.append(StageCount(**{**s, "bake_left": None if left is None else max(0.0, left - (now - evaluated))}))
    policy = rollout.policy
    return schemas.RolloutOut(
        id=record.id,
        release=record.release_ref,
        previous=record.previous_ref,
        target=record.target,
        status=record.status,
        phase=policy.phases[rollout.state.phase].name,
        reason=rollout.state.reason,
        rollback=rollout.state.rollback,
        rollback_remaining=summary.get("rollback_remaining", 0),
        skipped=summary.get("skipped", 0),
        not_targeted=summary.get("not_targeted", 0),
        stages=stages,
        health_regressions=summary.get("health_regressions", []),
        policy=_policy_view(policy),
        created_at=record.created_at,
        updated_at=record.updated_at,
        evaluated_at=utc(evaluated) if evaluated is not None else None,
    )


def _policy_view(policy: RolloutPolicy) -> dict[str, Any]:
    return {
        "pilot": None if policy.pilot is None else str(policy.pilot),
        "stages": [dataclasses.asdict(s) for s in policy.stages],
        "on_fail": policy.on_fail.value,
        "window": None if policy.window is None else str(policy.window),
        "notice_s": policy.notice,
    }
