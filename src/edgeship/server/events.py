"""The device event log: idempotent ingestion by (device, event ID), and reading it in order."""

from __future__ import annotations

import functools
from datetime import datetime, timezone

from sqlalchemy import Insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from edgeship.server import schemas
from edgeship.server.auth import DeviceIdentity
from edgeship.server.models import Event
from edgeship.server.problems import PayloadTooLarge

_INSERT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
_EVENTS_LOCK = 7205120002


@functools.cache
def _insert(dialect: str) -> Insert:
    """Insert events, skipping any already stored, returning the IDs of those written."""
    table = Event.__table__
    return _INSERT[dialect](table).on_conflict_do_nothing(index_elements=["device_id", "event_id"]).returning(table.c.event_id)


def ingest(session: Session, device: DeviceIdentity, events: list[schemas.EventIn], max_batch: int) -> schemas.EventsResponse:
    """Store each event once; a resent event (same ID from the same device) is counted, not stored."""
    if len(events) > max_batch:
        raise PayloadTooLarge(f"{len(events)} events in one request; the limit is {max_batch}", hint="send them in smaller batches")
    unique = {e.id: e for e in events}  # a batch may repeat an ID too
    if not unique:
        return schemas.EventsResponse(accepted=0, duplicates=0)
    now = datetime.now(timezone.utc)
    rows = [
        {
            "device_id": device.id,
            "event_id": e.id,
            "time": e.time,
            "type": e.type,
            "state": e.state,
            "release": e.release,
            "data": e.data,
            "received_at": now,
        }
        for e in unique.values()
    ]
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        # Commit events in sequence order, so that a reader paging with ?after=<seq> never
        # skips an event whose lower seq committed after a higher one (SQLite writes are
        # serialized already). Held only for this short transaction.
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _EVENTS_LOCK})
    # ON CONFLICT DO NOTHING keeps this race-free when a device resends while the first copy commits.
    # The rows go as parameters of one cached statement (SQLAlchemy sends them as one multi-row
    # INSERT): rows written into the statement (``.values(rows)``) made it a new statement to
    # compile on every post, most of an event post's CPU.
    accepted = len(session.execute(_insert(dialect), rows).all())
    return schemas.EventsResponse(accepted=accepted, duplicates=len(events) - accepted)


def list_events(session: Session, device_id: str | None, after: int, limit: int) -> schemas.EventPage:
    query = select(Event).where(Event.seq > after).order_by(Event.seq).limit(limit)
    if device_id:
        query = query.where(Event.device_id == device_id)
    events = [_event_out(r) for r in session.scalars(query).all()]
    return schemas.EventPage(events=events, next_after=events[-1].seq if events else after)


def latest_events(session: Session, device_id: str, limit: int) -> list[schemas.EventOut]:
    """A device's newest events, newest first (one index range scan, however long its log)."""
    query = select(Event).where(Event.device_id == device_id).order_by(Event.seq.desc()).limit(limit)
    return [_event_out(r) for r in session.scalars(query).all()]


def _event_out(r: Event) -> schemas.EventOut:
    return schemas.EventOut(
        seq=r.seq,
        device_id=r.device_id,
        id=r.event_id,
        time=r.time,
        type=r.type,
        state=r.state,
        release=r.release,
        data=r.data,
        received_at=r.received_at,
    )
