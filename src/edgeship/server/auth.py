"""Who is calling: operators (admin tokens) and devices (device ID + secret)."""

from __future__ import annotations

from datetime import datetime, timezone

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


def _device(session: Session, cred: Credential) -> Device | None:
    device = session.get(Device, cred.id)
    if device is None or not secret_matches(cred.secret, device.secret_hash):
        return None
    if device.decommissioned_at is not None:
        raise Unauthorized(f"device {device.id} was decommissioned", hint="enroll it again with a new enrollment token")
    return device


def require_admin(session: Session, cred: Credential) -> AdminToken:
    token = _admin(session, cred)
    if token is None:
        raise Unauthorized("admin token not accepted", hint="create one with `edgeship admin token create` or `edgeship server init`")
    return token


def require_device(session: Session, cred: Credential, device_id: str) -> Device:
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
