"""The check-in fast path (fast_checkin.py) and the batch's bulk writes (fleet.checkin_batch):
the fast path answers as the full route does, is observed as it is and keeps the body limit;
a batch stores each device's own report with one UPDATE, and never acknowledges a device
it did not write; a worker process keeps its
startup heap out of the garbage collector's full passes."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select, update

from edgeship.errors import ConflictError
from edgeship.server import fleet as fleet_mod
from edgeship.server import schemas
from edgeship.server.app import app_from_env
from edgeship.server.credentials import Credential
from edgeship.server.db import Database
from edgeship.server.models import Device as DeviceRow
from edgeship.server.problems import Unauthorized
from tests.server.conftest import Fleet, enrolled_in


def _checkin(version: str, **more: Any) -> dict:
    return {"state": "committed", "current": {"name": "app", "version": version, "release_id": None}, **more}


def test_fast_path_answers_as_the_full_route(fleet: Fleet) -> None:
    """The same check-in sent as the fast path takes it (application/json) and as only the full
    route takes it (a charset parameter): same answer, both stored, both counted under the
    check-in route with a request ID, and a decommissioned device refused alike."""
    fleet.admin.post("/v1/admin/assignments", json={"release": "app@1.0.0", "tag": "lane=fast"}).raise_for_status()
    d = fleet.enroll({"lane": "fast"})
    url = f"/v1/devices/{d.id}/checkin"
    before = _counted(fleet)
    answers = []
    with fleet.anon() as c:
        for version, content_type in (("1.0.1", "application/json"), ("1.0.2", "application/json; charset=utf-8")):
            r = c.post(url, json=_checkin(version), headers={**d.auth, "content-type": content_type})
            assert r.status_code == 200, r.text
            assert r.headers["content-type"] == "application/json" and len(r.headers["x-request-id"]) == 32
            answers.append(r.json())
            assert fleet.admin.get(f"/v1/admin/devices/{d.id}").json()["current"]["version"] == version
        assert answers[0] == answers[1]
        assert answers[0]["assignment"]["version"] == "1.0.0" and answers[0]["tags"] == {"lane": "fast"}
        assert _counted(fleet) == before + 2
        fleet.admin.delete(f"/v1/admin/devices/{d.id}").raise_for_status()
        for content_type in ("application/json", "application/json; charset=utf-8"):
            r = c.post(url, json=_checkin("1.0.3"), headers={**d.auth, "content-type": content_type})
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", r.text
            assert r.json()["error"]["code"] == "unauthorized"


def _counted(fleet: Fleet) -> float:
    """Successful check-ins the server's metrics count under the check-in route."""
    text = fleet.anon().get("/metrics").text
    label = 'method="POST",route="/v1/devices/{device_id}/checkin",status="200"'
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("edgeship_http_requests_total{") and label in line)


@pytest.fixture
def db(fresh_database_url: str) -> Any:
    database = Database(fresh_database_url)
    database.migrate()
    yield database
    database.dispose()


def test_a_batch_stores_each_devices_own_report(db: Database) -> None:
    """One batch mixing check-ins with and without facts, one device twice: each row holds its
    own device's report, and facts change only where facts were sent."""
    a, b, c = enrolled_in(db, 3, schemas.Facts(arch="old"))
    req = schemas.CheckinRequest.model_validate
    calls = [
        fleet_mod.CheckinCall(a, a.id, req(_checkin("1.0.0", facts={"arch": "new-a"}))),
        fleet_mod.CheckinCall(b, b.id, req(_checkin("2.0.0"))),
        fleet_mod.CheckinCall(c, c.id, req(_checkin("3.0.0", facts={"arch": "new-c", "ram": 5}))),
        fleet_mod.CheckinCall(b, b.id, req(_checkin("2.0.1", state="idle"))),
    ]
    with db.write() as session:
        results = fleet_mod.checkin_batch(session, calls, 30)
    assert all(isinstance(r, schemas.CheckinResponse) and r.tags == {"k": "v"} for r in results), results
    with db.read() as session:
        rows = {r.id: r for r in session.scalars(select(DeviceRow))}
    assert (rows[a.id].current["version"], rows[a.id].facts) == ("1.0.0", {"arch": "new-a"})
    assert (rows[b.id].current["version"], rows[b.id].state, rows[b.id].facts) == ("2.0.1", "idle", {"arch": "old"})
    assert (rows[c.id].current["version"], rows[c.id].facts) == ("3.0.0", {"arch": "new-c", "ram": 5})
    assert rows[a.id].last_seen_at is not None and rows[b.id].last_seen_at is not None


def test_a_device_that_changes_around_the_write_is_answered_as_it_was_written(db: Database) -> None:
    """Another instance changes a device while a batch writes it. Decommissioned just before
    the batch's UPDATE: refused, and the other device stored. Valid again just after the
    UPDATE refused it (no command does that today; a re-keyed device would): not acknowledged,
    since nothing of it was written; the batch fails, and GroupCommit then writes each call
    alone."""
    good, gone = enrolled_in(db, 2, schemas.Facts(arch="old"))
    req = schemas.CheckinRequest.model_validate(_checkin("1.0.0"))
    calls = [fleet_mod.CheckinCall(good, good.id, req), fleet_mod.CheckinCall(gone, gone.id, req)]

    def set_decommissioned(when: datetime | None) -> Any:
        return update(DeviceRow.__table__).where(DeviceRow.id == gone.id).values(decommissioned_at=when)

    def batch_with(change: Any, before: str) -> list[Any]:
        done: list[int] = []

        def between(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if not done and statement.startswith(before):
                done.append(0)  # before the change, itself an UPDATE, comes through here
                done[0] = conn.execute(change).rowcount

        event.listen(db.engine, "before_cursor_execute", between)
        try:
            with db.write() as session:
                return fleet_mod.checkin_batch(session, calls, 30)
        finally:
            event.remove(db.engine, "before_cursor_execute", between)
            assert done == [1]

    results = batch_with(set_decommissioned(datetime.now(timezone.utc)), before="UPDATE devices SET")
    assert isinstance(results[0], schemas.CheckinResponse) and isinstance(results[1], Unauthorized)
    assert "decommissioned" in str(results[1])
    with pytest.raises(ConflictError):
        batch_with(set_decommissioned(None), before="SELECT devices.secret_hash")  # the slow path's read
    # The change ran in the batch's own transaction (SQLite has one writer), so it rolled back
    # with it: alone, the device is refused again as decommissioned.
    results = []
    for call in calls:
        with db.write() as session:
            results += fleet_mod.checkin_batch(session, [call], 30)
    assert isinstance(results[0], schemas.CheckinResponse) and isinstance(results[1], Unauthorized)


def test_a_batch_writes_a_device_that_calls_twice_in_rounds() -> None:
    """One UPDATE cannot write a row twice: a device's second call of a batch goes into a second
    round, after its first; a call with another device's credential into none."""
    def call(cred_id: str, device_id: str) -> fleet_mod.CheckinCall:
        return fleet_mod.CheckinCall(Credential(cred_id, "s"), device_id, schemas.CheckinRequest())

    calls = [call("a", "a"), call("b", "b"), call("a", "a"), call("c", "b"), call("a", "a"), call("b", "b")]
    assert fleet_mod._rounds(calls) == [[0, 1], [2, 5], [4]]
    assert fleet_mod._rounds([]) == []


def test_a_worker_process_leaves_its_startup_heap_out_of_gc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's app, once built, is frozen out of the collector's full passes (those passes
    over the app's ~170,000 objects stalled requests 100+ ms: the check-in p99)."""
    monkeypatch.setenv("EDGESHIP_DATA_DIR", str(tmp_path / "data"))
    gc.unfreeze()
    try:
        app_from_env()
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()


def test_an_oversized_checkin_streamed_to_the_fast_path_gets_413(fleet: Fleet) -> None:
    """The fast path reads the body itself: a chunked check-in (no Content-Length) that grows
    past the body limit is cut off and answered 413, and nothing is stored."""
    d = fleet.enroll()

    def chunks() -> Iterator[bytes]:
        yield b'{"state": "committed", "facts": {"arch": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}}'

    with fleet.anon() as c:
        r = c.post(f"/v1/devices/{d.id}/checkin", content=chunks(), headers={**d.auth, "content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large", r.text
        assert c.post(f"/v1/devices/{d.id}/checkin", json=_checkin("1.0.0"), headers=d.auth).status_code == 200
    seen = fleet.admin.get(f"/v1/admin/devices/{d.id}").json()
    assert seen["facts"] == {"arch": "aarch64", "ram": 8 << 30} and seen["current"]["version"] == "1.0.0"
