"""Which release a device should run.

``resolve_assignments`` is the single place check-in asks (for a batch of devices). The row the rollout job
materialized for the device wins (``edgeship.server.rollouts``); without one, an operator's
newest order for the device, then the newest order for one of its tags.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Row, and_, bindparam, delete, or_, select
from sqlalchemy.orm import Session

from edgeship.errors import NotFoundError, UsageError
from edgeship.release.manifest import parse_ref
from edgeship.server import push, schemas
from edgeship.server.auth import DeviceIdentity
from edgeship.server.bases import check_bases, release_manifest
from edgeship.server.models import Assignment, Device, RolloutAssignment
from edgeship.server.repository import ServerRepository
from edgeship.server.storage import BlobStorage

_R = RolloutAssignment.__table__.c
_IDS = bindparam("ids", expanding=True)
_FROM_ROLLOUT = select(
    _R.device_id, _R.release_name, _R.release_version, _R.release_id, _R.rollback, _R.rollout_id, _R.window, _R.notice_s
).where(_R.device_id.in_(_IDS))
_A = Assignment.__table__.c
# Tag orders are few (one per tag an operator assigned to), so they are matched here rather
# than with an IN of (key, value) pairs, which SQLAlchemy must re-render on every call.
_FOR_DEVICES = (
    select(_A.device_id, _A.tag_key, _A.tag_value, _A.release_name, _A.release_version, _A.release_id, _A.rollback)
    .where(or_(_A.device_id.in_(_IDS), _A.tag_key.is_not(None)))
    .order_by(_A.id.desc())
)


def resolve_assignment(session: Session, device: DeviceIdentity) -> schemas.AssignmentOut | None:
    return resolve_assignments(session, [device])[device.id]


def resolve_assignments(session: Session, devices: list[DeviceIdentity]) -> dict[str, schemas.AssignmentOut | None]:
    """What each device should run, by device ID: two queries for any number of devices (a
    batch of check-ins asks once)."""
    if not devices:
        return {}
    conn = session.connection()
    ids = sorted({d.id for d in devices})
    staged = {r.device_id: r for r in conn.execute(_FROM_ROLLOUT, {"ids": ids})}
    orders = conn.execute(_FOR_DEVICES, {"ids": ids}).all() if len(staged) < len(ids) else []
    return {d.id: _staged_out(staged[d.id]) if d.id in staged else _order_out(orders, d) for d in devices}


def _staged_out(row: Row[Any]) -> schemas.AssignmentOut:
    return schemas.AssignmentOut(
        name=row.release_name,
        version=row.release_version,
        release_id=row.release_id,
        rollback=row.rollback,
        rollout_id=row.rollout_id,
        window=row.window,
        notice_s=row.notice_s,
    )


def _order_out(orders: list[Row[Any]], device: DeviceIdentity) -> schemas.AssignmentOut | None:
    """The newest order for the device itself, else the newest for one of its tags."""
    tags = {(k, str(v)) for k, v in device.tags.items()}
    chosen = next((r for r in orders if r.device_id == device.id), None) or next(
        (r for r in orders if (r.tag_key, r.tag_value) in tags), None
    )
    if chosen is None:
        return None
    return schemas.AssignmentOut(
        name=chosen.release_name, version=chosen.release_version, release_id=chosen.release_id, rollback=chosen.rollback
    )


def assign(session: Session, repo: ServerRepository, storage: BlobStorage,
           req: schemas.AssignmentCreate) -> schemas.AssignmentRecord:
    """Record an operator's order; it replaces an earlier order for the same device or tag."""
    name, version = parse_ref(req.release)
    if version is None:
        raise UsageError(f"assign needs an exact version of {name}", hint=f"write {name}@VERSION")
    if (req.tag is None) == (req.device_id is None):
        raise UsageError("assign to exactly one of a tag or a device", hint="pass --tag k=v or --device ID")
    release = repo.find_release(name, version)
    if req.device_id is not None:
        if session.get(Device, req.device_id) is None:
            raise NotFoundError(f"no device {req.device_id}", hint="`edgeship device list` shows enrolled devices")
        target = Assignment.device_id == req.device_id
        tag = (None, None)
    else:
        tag = schemas.parse_tag(req.tag or "")
        target = and_(Assignment.tag_key == tag[0], Assignment.tag_value == tag[1])
    manifest = release_manifest(storage, release)
    if manifest.adapter_bases():
        check_bases(storage, repo, manifest, _targets(session, req.device_id, tag))
    session.execute(delete(Assignment).where(target))
    row = Assignment(
        release_name=name,
        release_version=version,
        release_id=release["release_id"],
        rollback=req.rollback,
        device_id=req.device_id,
        tag_key=tag[0],
        tag_value=tag[1],
        created_at=datetime.now(timezone.utc),
    )
    session.add(row)
    session.flush()
    ref = f"{name}@{version}"
    if req.device_id is not None:
        push.device_changed(session, req.device_id, "assigned", release=ref)
    else:
        push.tag_changed(session, tag[0] or "", tag[1] or "", "assigned", release=ref)
    return record_out(row)


def _targets(session: Session, device_id: str | None, tag: tuple[str | None, str | None]) -> list[Device]:
    """The devices an order reaches now: the one named, or the enrolled ones with the tag."""
    if device_id is not None:
        return [d for d in (session.get(Device, device_id),) if d is not None]
    devices = session.scalars(select(Device).where(Device.decommissioned_at.is_(None)))
    return [d for d in devices if tag[0] in d.tags and str(d.tags[tag[0]]) == tag[1]]


def list_assignments(session: Session) -> list[schemas.AssignmentRecord]:
    return [record_out(a) for a in session.scalars(select(Assignment).order_by(Assignment.id))]


def record_out(a: Assignment) -> schemas.AssignmentRecord:
    return schemas.AssignmentRecord(
        id=a.id,
        release=f"{a.release_name}@{a.release_version}",
        release_id=a.release_id,
        rollback=a.rollback,
        device_id=a.device_id,
        tag=f"{a.tag_key}={a.tag_value}" if a.tag_key is not None else None,
        created_at=a.created_at,
    )
