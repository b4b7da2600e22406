"""Enrollment tokens, device enrollment, check-in and the operator's view of devices."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session

from edgeship.broker import mosquitto_hash
from edgeship.errors import ConflictError, EdgeshipError, NotFoundError
from edgeship.mqtt import device_password
from edgeship.server import schemas
from edgeship.server.assignments import resolve_assignment, resolve_assignments
from edgeship.server.auth import DeviceIdentity, require_device
from edgeship.server.credentials import (
    Credential,
    new_credential,
    parse_token,
    secret_matches,
)
from edgeship.server.models import Device, EnrollToken
from edgeship.server.push import account_added, account_removed
from edgeship.server.problems import Forbidden, Unauthorized


def _now() -> datetime:
    return datetime.now(timezone.utc)


# -- enrollment tokens --------------------------------------------------------------------


def create_enroll_token(session: Session, req: schemas.EnrollTokenCreate) -> schemas.EnrollTokenOut:
    cred = new_credential("enr")
    now = _now()
    token = EnrollToken(
        id=cred.id,
        secret_hash=cred.secret_hash,
        tags=req.tags,
        uses_allowed=req.uses,
        uses=0,
        expires_at=now + timedelta(seconds=req.expires_s) if req.expires_s else None,
        created_at=now,
    )
    session.add(token)
    return _token_out(token, cred.token)


def revoke_enroll_token(session: Session, token_id: str) -> schemas.EnrollTokenOut:
    token = session.get(EnrollToken, token_id)
    if token is None:
        raise NotFoundError(f"no enrollment token {token_id[:40]}", hint="`edgeship device token create` prints the ID of each token")
    if token.revoked_at is None:
        token.revoked_at = _now()
    return _token_out(token)


def _token_out(token: EnrollToken, secret: str | None = None) -> schemas.EnrollTokenOut:
    return schemas.EnrollTokenOut(
        id=token.id,
        token=secret,
        tags=token.tags,
        uses_allowed=token.uses_allowed,
        uses=token.uses,
        expires_at=token.expires_at,
        revoked_at=token.revoked_at,
        created_at=token.created_at,
    )


def _spend_token(session: Session, cred: Credential) -> EnrollToken:
    """Count one use of an enrollment token, atomically, or say why it cannot be used."""
    token = session.get(EnrollToken, cred.id)
    if token is None or not secret_matches(cred.secret, token.secret_hash):
        raise Unauthorized("enrollment token not accepted", hint="ask the operator for a token from `edgeship device token create`")
    now = _now()
    # A conditional UPDATE, so that two devices racing for the last use cannot both win.
    spent = session.execute(
        update(EnrollToken)
        .where(
            EnrollToken.id == token.id,
            EnrollToken.revoked_at.is_(None),
            or_(EnrollToken.expires_at.is_(None), EnrollToken.expires_at > now),
            or_(EnrollToken.uses_allowed.is_(None), EnrollToken.uses < EnrollToken.uses_allowed),
        )
        .values(uses=EnrollToken.uses + 1)
        .execution_options(synchronize_session=False)
    )
    if spent.rowcount == 1:
        session.refresh(token)
        return token
    session.refresh(token)
    if token.revoked_at is not None:
        raise Forbidden(f"enrollment token {token.id} was revoked", hint="ask the operator for a new token")
    if token.expires_at is not None and token.expires_at <= now:
        raise Forbidden(f"enrollment token {token.id} expired at {token.expires_at:%Y-%m-%d %H:%M}Z", hint="ask the operator for a new token")
    raise Forbidden(f"enrollment token {token.id} is used up ({token.uses} of {token.uses_allowed} devices)", hint="ask the operator for a new token")


# -- devices ------------------------------------------------------------------------------


def enroll(session: Session, req: schemas.EnrollRequest, poll_interval_s: int) -> schemas.EnrollResponse:
    token = _spend_token(session, parse_token(req.token, "enrollment token"))
    cred = new_credential("dev")
    # The operator's tags on the token win over what the device claims about itself.
    tags = {**req.tags, **token.tags}
    password = device_password(cred.secret)
    account_added(session, cred.id, password, tags)  # the only moment the server knows the password
    session.add(
        Device(
            id=cred.id,
            secret_hash=cred.secret_hash,
            mqtt_password_hash=mosquitto_hash(password),
            tags=tags,
            facts=req.facts.model_dump(exclude_none=True),
            state="idle",
            enroll_token_id=token.id,
            enrolled_at=_now(),
        )
    )
    return schemas.EnrollResponse(device_id=cred.id, secret=cred.secret, poll_interval_s=poll_interval_s, tags=tags)


_D = Device.__table__.c
_CHECKIN_FIELDS = ("state", "current", "previous", "last_seen_at")
# Check-in is the server's hottest path, so a batch of check-ins (``GroupCommit``) costs a
# fixed number of statements whatever its size: one SELECT of the batch's devices (credential,
# tags), at most two UPDATEs sent as executemany (with and without new facts), and the
# batch's assignment lookup. The UPDATE repeats the credential test, so that a device
# decommissioned or re-keyed between the two statements (another instance, on PostgreSQL)
# is not written: its missing row count sends the batch down the per-device path.
_DEVICES = select(_D.id, _D.secret_hash, _D.tags).where(_D.id.in_(bindparam("ids", expanding=True)), _D.decommissioned_at.is_(None))
_CHECKIN = (
    update(Device.__table__)
    .where(_D.id == bindparam("device_id"), _D.secret_hash == bindparam("presented_hash"), _D.decommissioned_at.is_(None))
    .values({f: bindparam(f) for f in _CHECKIN_FIELDS})
)
_CHECKIN_FACTS = _CHECKIN.values(facts=bindparam("facts"))


@dataclass(frozen=True)
class CheckinCall:
    """One device's check-in request: who presented which credential for which device, saying what."""

    cred: Credential
    device_id: str
    req: schemas.CheckinRequest


def checkin_batch(session: Session, calls: list[CheckinCall], poll_interval_s: int) -> list[schemas.CheckinResponse | EdgeshipError]:
    """Record what each device reports and answer what it should run, all in the caller's one
    transaction (``GroupCommit`` batches concurrent check-ins). A refused call gets its error
    in its place and the others go on: a refusal writes nothing."""
    now = _now()
    conn = session.connection()
    stored = {r.id: r for r in conn.execute(_DEVICES, {"ids": sorted({c.device_id for c in calls})})}
    devices: list[DeviceIdentity | EdgeshipError] = []
    writes: dict[bool, list[dict[str, Any]]] = {False: [], True: []}  # by "sends facts"
    for call in calls:
        row = stored.get(call.device_id)
        if row is not None and call.cred.id == call.device_id and hmac.compare_digest(call.cred.secret_hash, row.secret_hash):
            devices.append(DeviceIdentity(call.device_id, row.tags))
            writes[call.req.facts is not None].append(_checkin_values(call, now))
            continue
        try:  # the slow path says why (unknown, wrong secret, decommissioned, someone else's)
            devices.append(require_device(session, call.cred, call.device_id))
        except EdgeshipError as exc:
            devices.append(exc)
    for with_facts, values in writes.items():
        if values and conn.execute(_CHECKIN_FACTS if with_facts else _CHECKIN, values).rowcount != len(values):
            # Changed since the SELECT: end the transaction, so that each call is written
            # alone and finds the device as it now is (GroupCommit retries them one by one).
            raise ConflictError("a device changed while it checked in", hint="check in again")
    assignments = resolve_assignments(session, [d for d in devices if isinstance(d, DeviceIdentity)])
    return [
        d if isinstance(d, EdgeshipError)
        else schemas.CheckinResponse(assignment=assignments[d.id], poll_interval_s=poll_interval_s, tags={k: str(v) for k, v in d.tags.items()})
        for d in devices
    ]


def _checkin_values(call: CheckinCall, now: datetime) -> dict[str, Any]:
    req = call.req
    values: dict[str, Any] = {
        "device_id": call.device_id,
        "presented_hash": call.cred.secret_hash,
        "state": req.state,
        "current": req.current.model_dump() if req.current else None,
        "previous": req.previous.model_dump() if req.previous else None,
        "last_seen_at": now,
    }
    if req.facts is not None:
        values["facts"] = req.facts.model_dump(exclude_none=True)
    return values


def get_device(session: Session, device_id: str) -> Device:
    device = session.get(Device, device_id)
    if device is None:
        raise NotFoundError(f"no device {device_id[:40]}", hint="`edgeship device list` shows enrolled devices")
    return device


def list_devices(
    session: Session, tag: tuple[str, str] | None = None, after: str = "", limit: int = 500, include_decommissioned: bool = False
) -> list[Device]:
    query = select(Device).where(Device.id > after).order_by(Device.id).limit(limit)
    if tag is not None:
        query = query.where(Device.tags[tag[0]].as_string() == tag[1])
    if not include_decommissioned:
        query = query.where(Device.decommissioned_at.is_(None))
    return list(session.scalars(query))


def decommission(session: Session, device_id: str) -> Device:
    device = get_device(session, device_id)
    if device.decommissioned_at is None:
        device.decommissioned_at = _now()
        account_removed(session, device.id)
    return device


def device_out(session: Session, device: Device, with_assignment: bool = False) -> schemas.DeviceOut:
    assignment = resolve_assignment(session, DeviceIdentity(device.id, device.tags)) if with_assignment else None
    return schemas.DeviceOut(
        id=device.id,
        tags=device.tags,
        facts=device.facts,
        state=device.state,
        current=device.current,
        previous=device.previous,
        enrolled_at=device.enrolled_at,
        last_seen_at=device.last_seen_at,
        decommissioned_at=device.decommissioned_at,
        assignment=assignment,
    )

