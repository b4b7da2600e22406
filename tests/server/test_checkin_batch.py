"""Check-ins written in batches (group commit): every acknowledged check-in is stored, even
when the server is killed (SIGKILL) right after; concurrent check-ins each get their own
answer; a refused check-in in a batch does not affect the others."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from edgeship.server import fleet as fleet_mod
from edgeship.server import schemas
from edgeship.server.credentials import Credential
from edgeship.server.context import ServerContext
from edgeship.server.db import Database
from edgeship.server.group_commit import GroupCommit
from edgeship.server.models import Device as DeviceRow
from edgeship.server.problems import Forbidden, Unauthorized
from edgeship.server.settings import ServerSettings
from tests.helpers.server import postgres_schema
from tests.server.conftest import Fleet, enrolled_in, start_fleet


@pytest.fixture(params=["sqlite", "postgresql"])
def own_fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fleet]:
    """A server of the test's own (it may be killed), on each dialect."""
    if request.param == "sqlite":
        f = start_fleet(tmp_path, "")
        yield f
        f.admin.close()
        f.server.stop()
        return
    with postgres_schema() as url:
        f = start_fleet(tmp_path, url)
        yield f
        f.admin.close()
        f.server.stop()


def _database(f: Fleet) -> Database:
    return Database(f.database_url or ServerSettings(data_dir=f.server.data_dir).effective_database_url)


def _checkin(version: str) -> dict:
    return {"state": "committed", "current": {"name": "app", "version": version, "release_id": None}}


def test_acknowledged_checkins_survive_sigkill(own_fleet: Fleet) -> None:
    """Devices check in as fast as they can, each reporting a counter as its version; the server
    is killed with SIGKILL mid-stream. Each device's stored version must be the last one the
    server acknowledged to it (or the next, sent but whose answer the kill cut off)."""
    devices = [own_fleet.enroll({"fleet": "kill"}) for _ in range(12)]
    acked: dict[str, int] = {}
    stop = threading.Event()
    enough = threading.Barrier(len(devices) + 1)

    def device_loop(dev) -> None:  # type: ignore[no-untyped-def]
        n = 0
        with httpx.Client(base_url=own_fleet.url, headers=dev.auth, timeout=10) as client:
            while not stop.is_set():
                n += 1
                try:
                    r = client.post(f"/v1/devices/{dev.id}/checkin", json=_checkin(f"1.0.{n}"))
                except httpx.TransportError:
                    return  # the server is gone: this check-in was never acknowledged
                assert r.status_code == 200, r.text
                acked[dev.id] = n
                if n == 20:
                    enough.wait()

    threads = [threading.Thread(target=device_loop, args=(d,)) for d in devices]
    for t in threads:
        t.start()
    enough.wait(60)  # every device has 20 acknowledged check-ins and is still sending
    os.kill(own_fleet.server.proc.pid, signal.SIGKILL)
    own_fleet.server.proc.wait()
    stop.set()
    for t in threads:
        t.join(30)

    db = _database(own_fleet)
    try:
        with db.read() as session:
            stored = {r.id: r for r in session.execute(select(DeviceRow.id, DeviceRow.current, DeviceRow.state).where(DeviceRow.id.in_(acked)))}
    finally:
        db.dispose()
    assert len(acked) == len(devices)
    for device_id, n in acked.items():
        version = int(stored[device_id].current["version"].rsplit(".", 1)[1])
        assert version in (n, n + 1), f"{device_id}: acknowledged 1.0.{n}, stored 1.0.{version}"
        assert stored[device_id].state == "committed"


def test_concurrent_checkins_each_get_their_own_answer(own_fleet: Fleet) -> None:
    """Devices with different orders check in at once (so their check-ins share batches): each
    answer is the device's own, and each device's report is stored on its own row."""
    own_fleet.admin.post("/v1/admin/assignments", json={"release": "app@1.0.0", "tag": "group=a"}).raise_for_status()
    tagged = [own_fleet.enroll({"group": "a"}) for _ in range(6)]
    bare = [own_fleet.enroll({"group": "b"}) for _ in range(6)]

    async def all_at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=own_fleet.url, timeout=30) as client:
            return await asyncio.gather(*(
                client.post(f"/v1/devices/{d.id}/checkin", json=_checkin(f"0.{i}.{k}"), headers=d.auth)
                for k in range(5) for i, d in enumerate(tagged + bare)
            ))

    answers = asyncio.run(all_at_once())
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers if r.status_code != 200]
    for r in answers:
        device_id = r.request.url.path.split("/")[3]
        body = r.json()
        if any(d.id == device_id for d in tagged):
            assert body["assignment"]["name"] == "app" and body["assignment"]["version"] == "1.0.0"
            assert body["tags"] == {"group": "a"}
        else:
            assert body["assignment"] is None
            assert body["tags"] == {"group": "b"}
    for i, d in enumerate(tagged + bare):
        seen = own_fleet.admin.get(f"/v1/admin/devices/{d.id}").json()
        assert seen["current"]["version"].startswith(f"0.{i}."), seen


def test_a_checkin_the_database_refuses_fails_alone(own_fleet: Fleet) -> None:
    """A check-in whose facts PostgreSQL cannot store (NaN is not JSON to it) sent among many
    good ones: it alone is refused, the good ones are answered 200. The server now refuses NaN
    as it reads the body (test_body_parsing.py); that a batch the database refuses is written
    again call by call is tested on GroupCommit directly below."""
    devices = [own_fleet.enroll() for _ in range(16)]
    poison = own_fleet.enroll()
    body = b'{"state": "idle", "facts": {"arch": "x", "score": NaN}}'

    async def all_at_once() -> tuple[list[httpx.Response], httpx.Response]:
        async with httpx.AsyncClient(base_url=own_fleet.url, timeout=30) as client:
            def good(d, k):  # type: ignore[no-untyped-def]
                return client.post(f"/v1/devices/{d.id}/checkin", json=_checkin(f"2.0.{k}"), headers=d.auth)
            bad = client.post(f"/v1/devices/{poison.id}/checkin", content=body, headers={**poison.auth, "content-type": "application/json"})
            answers = await asyncio.gather(*[good(d, 1) for d in devices], bad, *[good(d, 2) for d in devices])
            return answers[: len(devices)] + answers[len(devices) + 1 :], answers[len(devices)]

    for _ in range(3):
        answers, refused = asyncio.run(all_at_once())
        assert [r.status_code for r in answers] == [200] * len(answers), [r.text for r in answers if r.status_code != 200]
        assert refused.status_code == 422, refused.text


def test_refused_checkins_in_a_batch_leave_the_others_stored(tmp_path: Path) -> None:
    """One batch (one transaction) of: a good check-in, a wrong secret, another device's
    credential, an unknown device. Each refusal is its own error; the good one is stored."""
    db = Database(f"sqlite:///{tmp_path / 'batch.db'}")
    db.migrate()
    try:
        good, other = enrolled_in(db, 2)
        req = schemas.CheckinRequest.model_validate(_checkin("9.9.9"))
        calls = [
            fleet_mod.CheckinCall(good, good.id, req),
            fleet_mod.CheckinCall(Credential(good.id, "not-the-secret"), good.id, req),
            fleet_mod.CheckinCall(other, good.id, req),
            fleet_mod.CheckinCall(Credential("dev_unknown0000", "x"), "dev_unknown0000", req),
        ]
        with db.write() as session:
            results = fleet_mod.checkin_batch(session, calls, 30)
        assert isinstance(results[0], schemas.CheckinResponse) and results[0].tags == {"k": "v"}
        assert isinstance(results[1], Unauthorized) and isinstance(results[3], Unauthorized)
        assert isinstance(results[2], Forbidden)
        with db.read() as session:
            rows = {r.id: r for r in session.scalars(select(DeviceRow))}
        assert rows[good.id].current["version"] == "9.9.9"
        assert rows[other.id].current is None
    finally:
        db.dispose()


def test_group_commit_batches_concurrent_calls_and_routes_results() -> None:
    """Calls arriving while a batch is written go together into the next one; each caller gets
    its own result or error; when a batch's write fails, only the calls that fail alone fail."""
    batches: list[list[int]] = []
    gate = threading.Event()

    def write(calls: list[int]) -> list[int | Exception]:
        gate.wait(5)  # hold the first batch until the others have queued up behind it
        batches.append(calls)
        if 13 in calls:
            raise RuntimeError("the transaction failed")
        return [ValueError(f"odd {c}") if c % 2 else c * 10 for c in calls]

    async def scenario() -> list[object]:
        group: GroupCommit[int, int] = GroupCommit(write)
        first = asyncio.ensure_future(group.submit(0))
        await asyncio.sleep(0.05)  # the first batch is now being written
        rest = [asyncio.ensure_future(group.submit(c)) for c in (2, 3, 4)]
        await asyncio.sleep(0.05)
        gate.set()
        done = await asyncio.gather(first, *rest, return_exceptions=True)
        failed = await asyncio.gather(group.submit(12), group.submit(13), group.submit(14), return_exceptions=True)
        return [*done, *failed]

    results = asyncio.run(scenario())
    # The failed batch is written again one call at a time: only 13 fails.
    assert batches == [[0], [2, 3, 4], [12, 13, 14], [12], [13], [14]]
    assert results[0] == 0 and results[1] == 20 and results[3] == 40
    assert isinstance(results[2], ValueError) and str(results[2]) == "odd 3"
    assert results[4] == 120 and isinstance(results[5], RuntimeError) and results[6] == 140


def test_group_commit_survives_a_cancelled_caller() -> None:
    """A caller that goes away (client disconnected) while its batch is written: the batch
    still completes for the others."""
    gate = threading.Event()

    def write(calls: list[int]) -> list[int | Exception]:
        gate.wait(5)
        return [c + 1 for c in calls]

    async def scenario() -> tuple[int, int]:
        group: GroupCommit[int, int] = GroupCommit(write)
        gone = asyncio.ensure_future(group.submit(1))
        stays = asyncio.ensure_future(group.submit(2))
        await asyncio.sleep(0.05)
        gone.cancel()
        gate.set()
        later = await group.submit(5)
        return await stays, later

    start = time.monotonic()
    assert asyncio.run(scenario()) == (3, 6)
    assert time.monotonic() - start < 5


def test_group_commit_serves_a_second_event_loop() -> None:
    """An app served by one event loop that was closed mid-batch (a test client's), then by
    another: the new loop's calls still get written, not queued behind the dead loop's writer."""
    gate = threading.Event()

    def write(calls: list[int]) -> list[int | Exception]:
        gate.wait(5)
        return [c + 1 for c in calls]

    group: GroupCommit[int, int] = GroupCommit(write)
    first = asyncio.new_event_loop()
    first.create_task(group.submit(1))
    first.run_until_complete(asyncio.sleep(0.05))  # its batch is now in the worker thread
    first.close()  # closed without finishing its tasks
    gate.set()

    async def later() -> int:
        return await asyncio.wait_for(group.submit(5), 5)

    assert asyncio.run(later()) == 6


_RAW = "SELECT CAST(state AS TEXT), CAST(current AS TEXT), CAST(previous AS TEXT), CAST(facts AS TEXT), CAST(last_seen_at AS TEXT) FROM devices WHERE id = :id"


def test_a_batch_stores_what_the_column_types_store(fresh_database_url: str) -> None:
    """Each check-in of a batch leaves the device's row exactly as an UPDATE of the same values
    through the columns' types leaves a twin device's, byte for byte at the driver: JSON null (not SQL NULL) for a
    report without ``current``/``previous``, facts kept when a report sends none, the
    timestamp in the column's own format (SQLite compares it as text in the change feed).
    Names, versions and facts carry quotes, backslashes and non-ASCII text."""
    db = Database(fresh_database_url)
    db.migrate()
    try:
        creds = enrolled_in(db, 4, schemas.Facts(arch="x86_64"))
        hostile = "it's \"quoted\" \\ ; DROP TABLE devices; -- ünïcødé ✓"
        reports = [
            {"state": "committed", "current": {"name": "app", "version": hostile, "release_id": None}},
            {"state": "trial", "previous": {"name": "a'b", "version": "1.0", "release_id": "r" * 64},
             "facts": {"arch": "arm64", "ram": 2**40, "note": hostile, "nested": {"list": [1, 2.5, None, True]}}},
        ]
        checked_in, twins = creds[:2], creds[2:]
        rows = []
        for report in reports:  # the first report sends no facts: the enrollment's are kept
            with db.write() as session:
                calls = [fleet_mod.CheckinCall(c, c.id, schemas.CheckinRequest.model_validate(report)) for c in checked_in]
                assert all(isinstance(r, schemas.CheckinResponse) for r in fleet_mod.checkin_batch(session, calls, 30))
            with db.write() as session:  # the same values bound through the columns' types, on the twins
                for c, twin in zip(checked_in, twins):
                    req = schemas.CheckinRequest.model_validate(report)
                    values = {
                        "state": req.state,
                        "current": req.current.model_dump() if req.current else None,
                        "previous": req.previous.model_dump() if req.previous else None,
                        "last_seen_at": session.get(DeviceRow, c.id).last_seen_at,  # type: ignore[union-attr]
                    }
                    if req.facts is not None:
                        values["facts"] = req.facts.model_dump(exclude_none=True)
                    session.execute(update(DeviceRow).where(DeviceRow.id == twin.id).values(values))
            with db.engine.connect() as conn:
                for c, twin in zip(checked_in, twins):
                    got, want = (conn.exec_driver_sql(*_driver_sql(conn.dialect.name, _RAW, id=i)).one() for i in (c.id, twin.id))
                    assert got == want
                rows.append(got)
        after_first, after_second = rows
        assert after_first[2] == "null" and json.loads(after_first[3]) == {"arch": "x86_64"}
        assert after_second[1] == "null" and json.loads(after_second[3])["note"] == hostile
    finally:
        db.dispose()


def _driver_sql(dialect: str, sql: str, **params: str) -> tuple[str, tuple | dict]:
    """``sql`` with ``:name`` parameters in the driver's own parameter style."""
    if dialect == "sqlite":
        return sql, params
    return sql.replace(":id", "%(id)s"), params


def test_a_batch_on_a_connection_that_died_idle_is_written_again(tmp_path: Path) -> None:
    """Check-in batches take their pooled connection without the pool's liveness test (a round
    trip each). PostgreSQL ends the idle connection (as a restart does): the next batch fails
    on it, and is written again, whole, on a fresh connection."""
    with postgres_schema() as url:
        ctx = ServerContext.build(ServerSettings(data_dir=tmp_path / "data", database_url=url))
        try:
            ctx.db.migrate()
            creds = enrolled_in(ctx.db, 3)
            req = schemas.CheckinRequest.model_validate(_checkin("1.0.1"))
            calls = [fleet_mod.CheckinCall(c, c.id, req) for c in creds]
            assert all(isinstance(r, schemas.CheckinResponse) for r in ctx._write_checkins(calls))
            with ctx.db.write(ping=False) as session:  # the pooled connection the batches use
                pid = session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            with ctx.db.engine.begin() as conn:
                assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})").scalar_one()
            req = schemas.CheckinRequest.model_validate(_checkin("1.0.2"))
            results = ctx._write_checkins([fleet_mod.CheckinCall(c, c.id, req) for c in creds])
            assert all(isinstance(r, schemas.CheckinResponse) for r in results), results
            with ctx.db.read() as session:
                stored = session.scalars(select(DeviceRow.current).where(DeviceRow.id.in_([c.id for c in creds]))).all()
            assert [s["version"] for s in stored] == ["1.0.2"] * 3
        finally:
            ctx.db.dispose()
