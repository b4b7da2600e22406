"""What devices send the server, parsed and stored exactly as the routes do, against a real
database (SQLite and PostgreSQL): event batches and enrollment requests from valid documents
with values replaced, removed or added, and from arbitrary bytes. Each is refused as the API
refuses it (a pydantic ValidationError is its 422, an EdgeshipError its 4xx) or stored so that
reading it back gives what was sent; nothing else may escape (a database error is a 500)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from edgeship.errors import EdgeshipError
from edgeship.server import events, fleet, schemas
from edgeship.server.auth import DeviceIdentity
from edgeship.server.db import Database
from edgeship.server.models import Device
from tests.fuzz.strategies import mutated
from tests.helpers.server import fresh_database_url  # noqa: F401 - SQLite and PostgreSQL

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
EVENT = {"id": "e-1", "time": "2026-01-01T00:00:00Z", "type": "state", "state": "trial", "release": "app@1.0.0",
         "data": {"attempt": 1, "note": "ok"}}


@pytest.fixture
def db(fresh_database_url: str, tmp_path: Path) -> Iterator[Database]:  # noqa: F811
    database = Database(fresh_database_url)
    database.migrate()
    yield database
    database.dispose()


def handled(db: Database, model: type[pydantic.BaseModel], raw: bytes, action: Callable[[Any, Any], None]) -> None:
    try:
        body = model.model_validate_json(raw)
    except pydantic.ValidationError:
        return  # the API's 422
    try:
        with db.write() as session:
            action(session, body)
    except EdgeshipError as exc:
        assert exc.message.strip()


def test_event_batches(db: Database) -> None:
    with db.write() as session:
        token = fleet.create_enroll_token(session, schemas.EnrollTokenCreate()).token
        enrolled = fleet.enroll(session, schemas.EnrollRequest(token=token, facts=schemas.Facts()), poll_interval_s=30)
    device = DeviceIdentity(enrolled.device_id, {})

    def ingest(session: Any, body: schemas.EventsRequest) -> None:
        result = events.ingest(session, device, body.events, max_batch=1000)
        assert result.accepted + result.duplicates == len(body.events)
        stored = {e.id: e for e in events.list_events(session, device.id, 0, 1000).events}
        for sent in body.events:
            assert sent.id in stored  # accepted now, or earlier under the same ID
            if result.accepted == len(body.events):
                got = stored[sent.id]
                assert (got.type, got.state, got.release, got.data) == (sent.type, sent.state, sent.release, sent.data)

    @FUZZ
    @given(st.one_of(mutated({"events": [EVENT, EVENT | {"id": "e-2", "type": "metrics"}]}).map(lambda d: json.dumps(d).encode()),
                     st.binary(max_size=300)))
    def run(raw: bytes) -> None:
        handled(db, schemas.EventsRequest, raw, ingest)

    run()


def test_enrollment(db: Database) -> None:
    with db.write() as session:
        token = fleet.create_enroll_token(session, schemas.EnrollTokenCreate(tags={"site": "lab"})).token
    valid = {"token": token, "facts": {"arch": "aarch64", "ram": 8 << 30, "os": "Linux"}, "tags": {"ring": "pilot"}}

    def enroll(session: Any, body: schemas.EnrollRequest) -> None:
        answer = fleet.enroll(session, body, poll_interval_s=30)
        session.flush()
        device = session.scalars(select(Device).where(Device.id == answer.device_id)).one()
        assert device.facts == body.facts.model_dump(exclude_none=True)
        assert device.tags == {**body.tags, "site": "lab"}

    @FUZZ
    @given(st.one_of(mutated(valid).map(lambda d: json.dumps(d).encode()), st.binary(max_size=300)))
    def run(raw: bytes) -> None:
        handled(db, schemas.EnrollRequest, raw, enroll)

    run()
