"""How the server reads JSON bodies, on SQLite and PostgreSQL, over real HTTP: numbers JSON
does not have (NaN, Infinity, what overflows a float) are refused with our own line before
anything is stored, and a caller who is not authenticated hears nothing about its body."""

from __future__ import annotations

import pytest

from tests.server.conftest import Fleet

_EVENT = '{"id": "e-nan", "time": "2026-01-01T00:00:00Z", "type": "metrics", "data": {"loss": %s}}'
_JSON = {"content-type": "application/json"}


def _refused(r) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid" and error["message"].startswith("the request body holds NaN or Infinity"), error
    assert "\n" not in error["message"]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_refused_on_every_json_route(fleet: Fleet, number: str) -> None:
    d = fleet.enroll(facts={"arch": "aarch64", "ram": 1})
    with fleet.anon() as c:
        body = '{"state": "idle", "facts": {"arch": "x", "deep": [{"score": %s}]}}' % number
        _refused(c.post(f"/v1/devices/{d.id}/checkin", content=body, headers={**d.auth, **_JSON}))
        # No content type: FastAPI's rule reads the body as JSON all the same.
        _refused(c.post(f"/v1/devices/{d.id}/checkin", content=body, headers=d.auth))
        _refused(c.post(f"/v1/devices/{d.id}/events", content='{"events": [%s]}' % (_EVENT % number), headers={**d.auth, **_JSON}))
    admin = fleet.admin
    _refused(admin.post("/v1/admin/enroll-tokens", content='{"uses": 1, "tags": {"k": %s}}' % number, headers=_JSON))
    _refused(admin.post("/v1/admin/federated", content='{"release": "app@1.0.0", "deadline_s": %s}' % number, headers=_JSON))
    _refused(admin.post("/v1/admin/metadata", content='{"targets": {"signed": {"x": %s}}}' % number, headers=_JSON))
    # Nothing of the refused requests was stored.
    shown = admin.get(f"/v1/admin/devices/{d.id}").json()
    assert shown["facts"] == {"arch": "aarch64", "ram": 1}
    assert admin.get("/v1/admin/events", params={"device_id": d.id}).json()["events"] == []
    with fleet.anon() as c:  # and the device is served as before
        assert c.post(f"/v1/devices/{d.id}/checkin", json={"state": "idle"}, headers=d.auth).status_code == 200


def test_a_bad_body_from_an_unauthenticated_caller_answers_401(fleet: Fleet) -> None:
    """Authentication is decided before the body is judged, whatever is wrong with the body."""
    d = fleet.enroll()
    wrong = {"authorization": f"Bearer {d.id}.wrong"}
    bodies = [b"{not json", b'{"state": "idle", "facts": {"x": NaN}}', b'{"state": "sleeping"}', b"\xff\xfe{"]
    with fleet.anon() as c:
        for url in (f"/v1/devices/{d.id}/checkin", f"/v1/devices/{d.id}/events"):
            for body in bodies:
                for headers in ({}, wrong):
                    r = c.post(url, content=body, headers={**headers, **_JSON})
                    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", (url, body, headers, r.text)
            # The device itself does hear what is wrong.
            assert c.post(url, content=b"{not json", headers={**d.auth, **_JSON}).status_code == 422
        for body in bodies:
            r = c.post("/v1/admin/enroll-tokens", content=body, headers=_JSON)
            assert r.status_code == 401, (body, r.text)
            r = c.post("/v1/admin/enroll-tokens", content=body, headers={"authorization": "Bearer adm_x.nope", **_JSON})
            assert r.status_code == 401, (body, r.text)


def test_malformed_json_is_said_in_our_words(fleet: Fleet) -> None:
    d = fleet.enroll()
    with fleet.anon() as c:
        for url in (f"/v1/devices/{d.id}/checkin", f"/v1/devices/{d.id}/events"):
            r = c.post(url, content=b'{"state":\n  oops}', headers={**d.auth, **_JSON})
            assert r.status_code == 422 and r.json()["error"]["message"].startswith("the request body is not JSON (line 2, column 3)"), r.text
            r = c.post(url, content=b"\xff\xfe{", headers={**d.auth, **_JSON})
            assert r.status_code == 422 and "cannot be parsed" in r.json()["error"]["message"], r.text
