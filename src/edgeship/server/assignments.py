"""Which release a device should run.

``resolve_assignment`` is the single place check-in asks; the rollout engine (issue 5)
replaces its body, and nothing else needs to change. For now an operator's newest order for
the device wins, then the newest order for one of its tags.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.orm import Session

from edgeship.errors import NotFoundError, UsageError
from edgeship.release.manifest import parse_ref
from edgeship.server import schemas
from edgeship.server.models import Assignment, Device
from edgeship.server.repository import ServerRepository


def resolve_assignment(session: Session, device: Device) -> Assignment | None:
    tag_match = [and_(Assignment.tag_key == k, Assignment.tag_value == str(v)) for k, v in device.tags.items()]
    rows = session.scalars(
        select(Assignment).where(or_(Assignment.device_id == device.id, *tag_match)).order_by(Assignment.id.desc())
    ).all()
    for row in rows:
        if row.device_id == device.id:
            return row
    return rows[0] if rows else None


def to_out(a: Assignment) -> schemas.AssignmentOut:
    return schemas.AssignmentOut(name=a.release_name, version=a.release_version, release_id=a.release_id, rollback=a.rollback)


def assign(session: Session, repo: ServerRepository, req: schemas.AssignmentCreate) -> schemas.AssignmentRecord:
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
    return record_out(row)


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
