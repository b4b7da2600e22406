"""Enrollment tokens, device enrollment, check-in and the operator's view of devices."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import JSON, ColumnElement, Update, bindparam, cast, func, literal_column, or_, select, update
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
# One row of the batch (a JSON array of such rows): what a check-in writes, as text (its
# JSON values serialized as the JSON column type serializes them).
_BATCH = ("device_id", "presented_hash", "state", "current", "previous", "facts")


@functools.cache
def _checkin_statement(dialect: str) -> Update:
    """Check-in is the server's hottest path, so a whole batch of check-ins (``GroupCommit``)
    is written by this one UPDATE whatever its size (once more for each device that calls
    again in the same batch, see ``_rounds``): it joins the batch's rows to their
    devices, writes those whose credential matches (and are not decommissioned), and returns
    them with their tags. What it did not write is refused, and the slow path says why."""
    elements = (func.json_array_elements if dialect == "postgresql" else func.json_each)(bindparam("batch", type_=JSON))
    rows = elements.table_valued("value")
    # The LIMIT (the batch's size) tells PostgreSQL's planner how many rows there are: it
    # assumes 100 of a JSON set function, and then hashes the whole devices table instead of
    # looking the batch's devices up by key.
    batch = select(*(rows.c.value.op("->>")(literal_column(str(i))).label(c) for i, c in enumerate(_BATCH))).limit(bindparam("n")).subquery("v")
    v = batch.c

    def as_json(text: ColumnElement[Any]) -> ColumnElement[Any]:
        return cast(text, JSON) if dialect == "postgresql" else text  # SQLite's JSON is text; a CAST would make it a number

    return (
        update(Device.__table__)
        .where(_D.id == v.device_id, _D.secret_hash == v.presented_hash, _D.decommissioned_at.is_(None))
        .values(
            state=v.state,
            current=as_json(v.current),
            previous=as_json(v.previous),
            facts=func.coalesce(as_json(v.facts), _D.facts),  # facts change only when sent
            last_seen_at=bindparam("now"),  # bound through the column's type, as every other write of it
        )
        .returning(_D.id, _D.tags)
    )


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
    conn = session.connection()
    statement = _checkin_statement(conn.dialect.name)
    now = _now()
    written: dict[int, dict[str, Any]] = {}  # call index: its device's tags
    for round_ in _rounds(calls):
        rows = [_batch_row(calls[i]) for i in round_]
        tags = dict(conn.execute(statement, {"batch": rows, "n": len(rows), "now": now}).all())
        written.update({i: tags[calls[i].device_id] for i in round_ if calls[i].device_id in tags})
    devices: list[DeviceIdentity | EdgeshipError] = []
    for i, call in enumerate(calls):
        if i in written:
            devices.append(DeviceIdentity(call.device_id, written[i]))
            continue
        try:  # the slow path says why (unknown, wrong secret, decommissioned, someone else's)
            require_device(session, call.cred, call.device_id)
        except EdgeshipError as exc:
            devices.append(exc)
            continue
        # Accepted now, yet the UPDATE did not write it: the device changed in between (another
        # instance). End the transaction, so that each call is written alone and finds the
        # device as it now is (GroupCommit retries them one by one).
        raise ConflictError("a device changed while it checked in", hint="check in again")
    assignments = resolve_assignments(session, [d for d in devices if isinstance(d, DeviceIdentity)])
    return [
        d if isinstance(d, EdgeshipError)
        else schemas.CheckinResponse(assignment=assignments[d.id], poll_interval_s=poll_interval_s, tags={k: str(v) for k, v in d.tags.items()})
        for d in devices
    ]


def _rounds(calls: list[CheckinCall]) -> list[list[int]]:
    """The indices of the calls to write, in rounds that hold each device at most once (one
    UPDATE cannot write a row twice), a device's calls in their order: the later report is
    the one that stays, as if the calls had run one by one. A call presenting another
    device's credential is left out: the slow path refuses it."""
    rounds: list[list[int]] = []
    seen: dict[str, int] = {}
    for i, call in enumerate(calls):
        if call.cred.id != call.device_id:
            continue
        n = seen.get(call.device_id, 0)
        seen[call.device_id] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(i)
    return rounds


def _batch_row(call: CheckinCall) -> tuple[str | None, ...]:
    """The call's row of the batch. JSON values are serialized as the JSON column type does
    (``json.dumps``, and None is JSON null), facts only when sent (SQL NULL keeps the stored)."""
    req = call.req
    return (
        call.device_id,
        call.cred.secret_hash,
        req.state,
        json.dumps(req.current.model_dump() if req.current else None),
        json.dumps(req.previous.model_dump() if req.previous else None),
        json.dumps(req.facts.model_dump(exclude_none=True)) if req.facts is not None else None,
    )


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

