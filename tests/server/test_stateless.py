"""Two instances over one database and data dir serve one fleet (nothing lives in memory)."""

from __future__ import annotations

import uuid

import httpx

from tests.helpers.server import running_server
from tests.server.conftest import Fleet


def test_a_second_instance_serves_the_same_fleet(fleet: Fleet) -> None:
    with running_server(fleet.server.data_dir, fleet.database_url) as other:
        token = fleet.enroll_token(uses=1)["token"]
        with httpx.Client(base_url=other.url) as b:
            enrolled = b.post("/v1/devices/enroll", json={"token": token, "facts": {}}).json()
            auth = {"authorization": f"Bearer {enrolled['device_id']}.{enrolled['secret']}"}
            # Enrolled on B, known to A; the token's single use is spent for both.
            assert fleet.admin.get(f"/v1/admin/devices/{enrolled['device_id']}").status_code == 200
            with fleet.anon() as a:
                assert a.post("/v1/devices/enroll", json={"token": token, "facts": {}}).status_code == 403
                event = {"id": uuid.uuid4().hex, "time": "2026-03-01T00:00:00Z", "type": "state", "state": "idle"}
                assert a.post(f"/v1/devices/{enrolled['device_id']}/events", json={"events": [event]}, headers=auth).json()["accepted"] == 1
            assert b.post(f"/v1/devices/{enrolled['device_id']}/events", json={"events": [event]}, headers=auth).json() == {
                "accepted": 0,
                "duplicates": 1,
            }
            r = b.get(f"/repo/blobs/sha256/{fleet.blob_hex}", headers={**auth, "range": "bytes=0-9"})
            assert r.status_code == 206 and r.content == fleet.blob[:10]


def test_several_workers_share_one_database(fleet: Fleet) -> None:
    with running_server(fleet.server.data_dir, fleet.database_url, ("--workers", "2")) as multi:
        d = fleet.enroll()
        with httpx.Client(base_url=multi.url) as c:
            for _ in range(6):  # spread over both workers
                r = c.post(f"/v1/devices/{d.id}/checkin", json={"state": "staged"}, headers=d.auth)
                assert r.status_code == 200
    assert fleet.admin.get(f"/v1/admin/devices/{d.id}").json()["state"] == "staged"
