"""The device and operator API against a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid

from tests.server.conftest import Fleet


def _event(type_: str = "state", **kw: object) -> dict:
    return {"id": str(uuid.uuid4()), "time": "2026-01-01T12:00:00Z", "type": type_, **kw}


def test_enroll_checkin_and_assignment_by_tag_then_device(fleet: Fleet) -> None:
    site = f"site-{uuid.uuid4().hex[:6]}"
    a = fleet.enroll({"site": site}, facts={"arch": "aarch64", "ram": 4 << 30, "hostname": "cam-1", "timezone": "Europe/Berlin"})
    b = fleet.enroll({"site": site})
    assert a.tags == {"site": site}
    with fleet.anon() as c:
        r = c.post(f"/v1/devices/{a.id}/checkin", json={"state": "idle", "current": None}, headers=a.auth)
        assert r.status_code == 200, r.text
        assert r.json() == {"assignment": None, "poll_interval_s": 30, "repo_path": "/repo/", "tags": {"site": site}}

        r = fleet.admin.post("/v1/admin/assignments", json={"release": "app@1.0.0", "tag": f"site={site}"})
        assert r.status_code == 201, r.text
        for dev in (a, b):
            got = c.post(f"/v1/devices/{dev.id}/checkin", json={"state": "idle"}, headers=dev.auth).json()["assignment"]
            assert (got["name"], got["version"], got["rollback"]) == ("app", "1.0.0", False)
            assert len(got["release_id"]) == 64

    shown = fleet.admin.get(f"/v1/admin/devices/{a.id}").json()
    assert shown["facts"]["hostname"] == "cam-1" and shown["state"] == "idle" and shown["last_seen_at"]
    assert shown["assignment"]["version"] == "1.0.0"


def test_checkin_records_state_and_releases(fleet: Fleet) -> None:
    d = fleet.enroll()
    current = {"name": "app", "version": "1.0.0", "release_id": "a" * 64}
    with fleet.anon() as c:
        r = c.post(f"/v1/devices/{d.id}/checkin", json={"state": "committed", "current": current, "facts": {"agent_version": "0.2"}}, headers=d.auth)
    assert r.status_code == 200
    shown = fleet.admin.get(f"/v1/admin/devices/{d.id}").json()
    assert shown["state"] == "committed" and shown["current"] == current and shown["facts"] == {"agent_version": "0.2"}


def test_assign_to_unknown_release_or_device_is_refused(fleet: Fleet) -> None:
    before = fleet.admin.get("/v1/admin/assignments").json()
    r = fleet.admin.post("/v1/admin/assignments", json={"release": "app@9.9.9", "tag": "a=b"})
    assert r.status_code == 404 and "not published" in r.json()["error"]["message"]
    r = fleet.admin.post("/v1/admin/assignments", json={"release": "app@1.0.0", "device_id": "dev_doesnotexist00"})
    assert r.status_code == 404
    r = fleet.admin.post("/v1/admin/assignments", json={"release": "app@1.0.0"})
    assert r.status_code == 422 and "exactly one" in r.json()["error"]["message"]
    assert fleet.admin.get("/v1/admin/assignments").json() == before


def test_events_are_idempotent_by_id(fleet: Fleet) -> None:
    d = fleet.enroll()
    batch = [_event(state="downloading", release="app@1.0.0"), _event("download", data={"bytes": 10}), _event("error", data={"why": "disk"})]
    with fleet.anon() as c:
        r = c.post(f"/v1/devices/{d.id}/events", json={"events": batch + [batch[0]]}, headers=d.auth)
        assert r.json() == {"accepted": 3, "duplicates": 1}
        # The reply was "lost": the device resends everything plus one new event.
        again = c.post(f"/v1/devices/{d.id}/events", json={"events": [*batch, _event(state="verifying")]}, headers=d.auth)
        assert again.json() == {"accepted": 1, "duplicates": 3}
    page = fleet.admin.get("/v1/admin/events", params={"device_id": d.id}).json()
    assert [e["id"] for e in page["events"]] == [e["id"] for e in batch] + [page["events"][3]["id"]]
    assert page["events"][1]["data"] == {"bytes": 10}
    later = fleet.admin.get("/v1/admin/events", params={"device_id": d.id, "after": page["events"][1]["seq"]}).json()
    assert len(later["events"]) == 2 and later["next_after"] == page["next_after"]


def test_a_device_cannot_read_or_write_for_another(fleet: Fleet) -> None:
    a, b = fleet.enroll(), fleet.enroll()
    with fleet.anon() as c:
        assert c.post(f"/v1/devices/{b.id}/checkin", json={}, headers=a.auth).status_code == 403
        assert c.post(f"/v1/devices/{b.id}/events", json={"events": [_event()]}, headers=a.auth).status_code == 403
        assert c.post(f"/v1/devices/{a.id}/checkin", json={}).status_code == 401
        wrong = {"authorization": f"Bearer {a.id}.{b.secret}"}
        r = c.post(f"/v1/devices/{a.id}/checkin", json={}, headers=wrong)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert c.post(f"/v1/devices/{a.id}/checkin", json={}, headers={"authorization": "Bearer nonsense"}).status_code == 401
        # A device credential is not an admin token.
        assert c.get("/v1/admin/devices", headers=a.auth).status_code == 401
    assert fleet.admin.get("/v1/admin/events", params={"device_id": b.id}).json()["events"] == []
    assert fleet.admin.get(f"/v1/admin/devices/{b.id}").json()["last_seen_at"] is None


def test_decommissioned_device_is_locked_out(fleet: Fleet) -> None:
    d = fleet.enroll()
    r = fleet.admin.delete(f"/v1/admin/devices/{d.id}")
    assert r.status_code == 200 and r.json()["decommissioned_at"]
    with fleet.anon() as c:
        r = c.post(f"/v1/devices/{d.id}/checkin", json={}, headers=d.auth)
        assert r.status_code == 401 and "decommissioned" in r.json()["error"]["message"]
        assert c.get("/repo/metadata/timestamp.json", headers=d.auth).status_code == 401
    ids = [x["id"] for x in fleet.admin.get("/v1/admin/devices", params={"limit": 5000}).json()]
    assert d.id not in ids
    ids = [x["id"] for x in fleet.admin.get("/v1/admin/devices", params={"limit": 5000, "all": True}).json()]
    assert d.id in ids


def test_enrollment_token_uses_expiry_and_revocation(fleet: Fleet) -> None:
    facts = {"facts": {"arch": "x86_64"}}
    with fleet.anon() as c:
        once = fleet.enroll_token(uses=1)
        assert c.post("/v1/devices/enroll", json={"token": once["token"], **facts}).status_code == 201
        r = c.post("/v1/devices/enroll", json={"token": once["token"], **facts})
        assert r.status_code == 403 and "used up" in r.json()["error"]["message"]

        short = fleet.enroll_token(expires_s=1)
        time.sleep(1.2)
        r = c.post("/v1/devices/enroll", json={"token": short["token"], **facts})
        assert r.status_code == 403 and "expired" in r.json()["error"]["message"]

        revoked = fleet.enroll_token()
        assert fleet.admin.delete(f"/v1/admin/enroll-tokens/{revoked['id']}").json()["revoked_at"]
        r = c.post("/v1/devices/enroll", json={"token": revoked["token"], **facts})
        assert r.status_code == 403 and "revoked" in r.json()["error"]["message"]

        forged = once["token"].split(".")[0] + ".not-the-secret"
        assert c.post("/v1/devices/enroll", json={"token": forged, **facts}).status_code == 401
        assert c.post("/v1/devices/enroll", json={"token": "garbage", **facts}).status_code == 401
    # None of the refused attempts counted as a use.
    assert fleet.admin.delete(f"/v1/admin/enroll-tokens/{once['id']}").json()["uses"] == 1
    assert fleet.admin.delete(f"/v1/admin/enroll-tokens/{short['id']}").json()["uses"] == 0
    assert fleet.admin.delete("/v1/admin/enroll-tokens/enr_nosuchtoken000").status_code == 404


def test_token_tags_win_over_device_tags(fleet: Fleet) -> None:
    token = fleet.enroll_token(tags={"ring": "pilot"}, uses=1)["token"]
    with fleet.anon() as c:
        r = c.post("/v1/devices/enroll", json={"token": token, "facts": {}, "tags": {"ring": "prod", "room": "3"}})
    assert r.json()["tags"] == {"ring": "pilot", "room": "3"}


def test_bad_input_gets_422_naming_the_field(fleet: Fleet) -> None:
    token = fleet.enroll_token(uses=1)
    d = fleet.enroll()
    with fleet.anon() as c:
        r = c.post("/v1/devices/enroll", json={"token": token["token"], "facts": {"ram": "lots"}})
        assert r.status_code == 422 and "facts.ram" in r.json()["error"]["message"]
        r = c.post("/v1/devices/enroll", json={"token": token["token"], "facts": {}, "tags": {"bad key!": "x"}})
        assert r.status_code == 422 and "tag key" in r.json()["error"]["message"]
        r = c.post(f"/v1/devices/{d.id}/events", json={"events": [{"id": "x", "time": "yesterday", "type": "state"}]}, headers=d.auth)
        assert r.status_code == 422 and "events.0.time" in r.json()["error"]["message"]
        r = c.post(f"/v1/devices/{d.id}/checkin", content=b"{not json", headers={**d.auth, "content-type": "application/json"})
        assert r.status_code == 422
        r = c.post(f"/v1/devices/{d.id}/checkin", json={"state": "exploded"}, headers=d.auth)
        assert r.status_code == 422 and "state" in r.json()["error"]["message"]
    # The token was not spent by the refused enrollments.
    assert fleet.admin.delete(f"/v1/admin/enroll-tokens/{token['id']}").json()["uses"] == 0


def test_oversized_bodies_get_413(fleet: Fleet) -> None:
    d = fleet.enroll()
    huge = {"events": [_event("metrics", data={"blob": "x" * (2 << 20)})]}
    with fleet.anon() as c:
        r = c.post(f"/v1/devices/{d.id}/events", json=huge, headers=d.auth)
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"

        def chunks():  # no Content-Length: the limit must hold while streaming
            for _ in range(40):
                yield b"x" * 65536

        r = c.post(f"/v1/devices/{d.id}/events", content=chunks(), headers={**d.auth, "content-type": "application/json"})
        assert r.status_code == 413
        many = {"events": [_event() for _ in range(501)]}
        assert c.post(f"/v1/devices/{d.id}/events", json=many, headers=d.auth).status_code == 413
    assert fleet.admin.get("/v1/admin/events", params={"device_id": d.id}).json()["events"] == []


def test_sql_looking_strings_are_stored_as_text(fleet: Fleet) -> None:
    evil = "x'; DROP TABLE devices; --"
    d = fleet.enroll({"site": evil}, facts={"hostname": "\" OR 1=1 --", "os": "Robert'); DROP TABLE events;--"})
    listed = fleet.admin.get("/v1/admin/devices", params={"tag": f"site={evil}"}).json()
    assert [x["id"] for x in listed] == [d.id]
    assert listed[0]["facts"]["hostname"] == "\" OR 1=1 --"
    r = fleet.admin.post("/v1/admin/assignments", json={"release": "app@1.0.0", "tag": f"site={evil}"})
    assert r.status_code == 201
    with fleet.anon() as c:
        got = c.post(f"/v1/devices/{d.id}/checkin", json={}, headers=d.auth).json()
    assert got["assignment"]["version"] == "1.0.0"
    assert fleet.admin.get("/v1/admin/devices", params={"tag": "site=x' OR '1'='1"}).json() == []
    assert fleet.admin.get("/v1/admin/devices", params={"tag": "no-equals-sign"}).status_code == 422


def test_admin_api_needs_the_admin_token(fleet: Fleet) -> None:
    with fleet.anon() as c:
        assert c.get("/v1/admin/devices").status_code == 401
        r = c.get("/v1/admin/devices", headers={"authorization": "Bearer adm_0000000000000000.nope"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert c.post("/v1/admin/enroll-tokens", json={}, headers={"authorization": "Basic abc"}).status_code == 401
    made = fleet.admin.post("/v1/admin/tokens", json={"name": "ci"}).json()
    with fleet.anon() as c:
        assert c.get("/v1/admin/devices", headers={"authorization": f"Bearer {made['token']}"}).status_code == 200


def test_health_readiness_request_ids_and_unknown_routes(fleet: Fleet) -> None:
    with fleet.anon() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").json() == {"status": "ready"}
        r = c.get("/readyz", headers={"x-request-id": "trace-me-42"})
        assert r.headers["x-request-id"] == "trace-me-42"
        assert len(c.get("/healthz").headers["x-request-id"]) == 32
        r = c.get("/v2/nothing")
        assert r.status_code == 404 and r.json()["error"]["code"] == "http_error"


def test_inputs_the_fuzzer_found_get_4xx_not_5xx(fleet: Fleet) -> None:
    """Each of these answered 500 (on PostgreSQL, most of them on SQLite too) until
    schemathesis (tests/fuzz) sent them."""
    d = fleet.enroll()
    event = {"id": "e1", "time": "2026-01-01T00:00:00Z", "type": "metrics"}
    with fleet.anon() as c:
        for bad in ({"data": {"k\x00": 1}}, {"data": {"k": ["\x00"]}}, {"release": "a\x00"}):
            r = c.post(f"/v1/devices/{d.id}/events", json={"events": [event | bad]}, headers=d.auth)
            assert r.status_code == 422 and "NUL" in r.json()["error"]["message"], r.text
        r = c.post(f"/v1/devices/{d.id}/checkin", json={"facts": {"arch": "x\x00"}}, headers=d.auth)
        assert r.status_code == 422
        r = c.post(f"/v1/devices/{d.id}/events", content=b"\xff\xfe{", headers={**d.auth, "content-type": "application/json"})
        assert r.status_code == 422 and "cannot be parsed" in r.json()["error"]["message"]
    assert fleet.admin.get("/v1/admin/devices/dev_%00").status_code == 422
    assert fleet.admin.get("/v1/admin/events", params={"device_id": "\x00"}).status_code == 422
    assert fleet.admin.get("/v1/admin/events", params={"after": 2**80}).status_code == 422
    assert fleet.admin.post("/v1/admin/enroll-tokens", json={"expires_s": 2**60}).status_code == 422
    assert fleet.admin.post("/v1/admin/enroll-tokens", json={"uses": 2**40}).status_code == 422
    assert fleet.admin.post("/v1/admin/webhooks", json={"url": "https://x.example/\x00", "secret": "s" * 16}).status_code == 422



def test_a_lone_surrogate_is_refused_before_it_can_poison_the_device_list(fleet: Fleet) -> None:
    """A device's facts holding an unpaired "\\udfff" were stored, and then every answer that
    carried them (device list and show) failed to encode: 500 for the operator."""
    d = fleet.enroll()
    json_body = {**d.auth, "content-type": "application/json"}
    event = b'{"events": [{"id": "e1", "time": "2026-01-01T00:00:00Z", "type": "metrics", "data": {"note": "\\ud800"}}]}'
    with fleet.anon() as c:
        r = c.post(f"/v1/devices/{d.id}/checkin", content=b'{"state": "idle", "facts": {"custom": "x\\udfff"}}', headers=json_body)
        assert r.status_code == 422 and "lone UTF-16 surrogate" in r.json()["error"]["message"], r.text
        r = c.post(f"/v1/devices/{d.id}/events", content=event, headers=json_body)
        assert r.status_code == 422 and "lone UTF-16 surrogate" in r.json()["error"]["message"], r.text
        r = c.post(f"/v1/devices/{d.id}/checkin", content=b'{"state": "idle", "facts": {"custom": "\\ud83d\\ude00"}}', headers=json_body)
        assert r.status_code == 200, r.text  # a pair is one character
    assert fleet.admin.get(f"/v1/admin/devices/{d.id}").json()["facts"]["custom"] == "\U0001f600"
    assert fleet.admin.get("/v1/admin/devices").status_code == 200

def test_checkin_refusals_match_the_other_routes(fleet: Fleet) -> None:
    """Check-ins are answered by a fast path before FastAPI's router (fast_checkin.py): its
    refusals must be the ones every other route gives for the same faults."""
    d = fleet.enroll()
    url = f"/v1/devices/{d.id}/checkin"
    with fleet.anon() as c:
        r = c.post(url, content=b"", headers=d.auth)
        assert r.status_code == 422 and r.json()["error"]["message"].startswith("body: Field required")
        r = c.post(url, content=b"{not json", headers={**d.auth, "content-type": "application/json"})
        assert r.status_code == 422 and r.json()["error"]["message"].startswith("the request body is not JSON")
        r = c.post(url, content=b"\xff\xfe{", headers={**d.auth, "content-type": "application/json"})
        assert r.status_code == 422 and "cannot be parsed" in r.json()["error"]["message"]
        r = c.post(url, content=b'{"state": "idle"}', headers={**d.auth, "content-type": "text/plain"})
        assert r.status_code == 422
        r = c.post(url, json={"state": "idle", "current": {"name": "app"}}, headers=d.auth)
        assert r.status_code == 422 and "current.version: Field required" in r.json()["error"]["message"]
        r = c.post(url, json={"state": "idle", "surprise": 1}, headers=d.auth)
        assert r.status_code == 422 and "surprise" in r.json()["error"]["message"]
        r = c.post("/v1/devices/dev_%00/checkin", json={"state": "idle"}, headers=d.auth)
        assert r.status_code == 422 and "NUL" in r.json()["error"]["message"]
        r = c.post(url, json={"state": "idle"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        r = c.post(url, json={"state": "idle"}, headers={"authorization": f"Bearer {d.id}.wrong"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert c.post(url, json={"state": "idle"}, headers=d.auth).status_code == 200
