"""Who is calling: operators (admin tokens) and devices (device ID + secret)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from edgeship.server.credentials import Credential, new_credential, secret_matches
from edgeship.server.models import AdminToken, Device
from edgeship.server.problems import Forbidden, Unauthorized


def create_admin_token(session: Session, name: str) -> Credential:
    cred = new_credential("adm")
    session.add(AdminToken(id=cred.id, name=name, secret_hash=cred.secret_hash, created_at=datetime.now(timezone.utc)))
    return cred


def _admin(session: Session, cred: Credential) -> AdminToken | None:
    token = session.get(AdminToken, cred.id)
    if token is None or token.revoked_at is not None or not secret_matches(cred.secret, token.secret_hash):
        return None
    return token


@dataclass(frozen=True)
class DeviceIdentity:
    """An authenticated device: all that check-in and event posting need to know of it."""

    id: str
    tags: dict[str, str]


# Built once (statements are immutable): check-in runs this on every request, and building a
# statement through the ORM costs more than running it.
_DEVICES = Device.__table__.c
_DEVICE_BY_ID = select(_DEVICES.secret_hash, _DEVICES.tags, _DEVICES.decommissioned_at).where(_DEVICES.id == bindparam("id"))


def _device(session: Session, cred: Credential) -> DeviceIdentity | None:
    row = session.connection().execute(_DEVICE_BY_ID, {"id": cred.id}).first()
    if row is None or not secret_matches(cred.secret, row.secret_hash):
        return None
    if row.decommissioned_at is not None:
        raise Unauthorized(f"device {cred.id} was decommissioned", hint="enroll it again with a new enrollment token")
    return DeviceIdentity(cred.id, row.tags)


def require_admin(session: Session, cred: Credential) -> AdminToken:
    token = _admin(session, cred)
    if token is None:
        raise Unauthorized("admin token not accepted", hint="create one with `edgeship admin token create` or `edgeship server init`")
    return token


def require_device(session: Session, cred: Credential, device_id: str) -> DeviceIdentity:
    """The calling device, which must be the one named in the URL."""
    device = _device(session, cred)
    if device is None:
        raise Unauthorized("device credential not accepted", hint="use the device ID and secret returned by enrollment")
    if device.id != device_id:
        raise Forbidden(f"device {device.id} may not act for device {device_id[:40]}")
    return device


def require_reader(session: Session, cred: Credential) -> None:
    """Repository reads: any enrolled device or an operator."""
    found = _admin(session, cred) if cred.id.startswith("adm_") else _device(session, cred)
    if found is None:
        raise Unauthorized("credential not accepted for the repository", hint="send a device credential or an admin token")
