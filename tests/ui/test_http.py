"""The dashboard over HTTP against a real server: login, sessions, CSRF, pages and actions."""

from __future__ import annotations

import time

import httpx
import pytest

from edgeship.server.settings import ServerSettings
from tests.helpers.server import running_server
from tests.ui.conftest import Lab, csrf_of, event, login

PAGES = ["/ui/fleet", "/ui/releases", "/ui/rollouts", "/ui/experiments", "/ui/federated", "/ui/fleet?partial=1"]


@pytest.fixture
def browser(lab: Lab) -> httpx.Client:
    """A logged-in client holding the session cookie."""
    client = lab.fleet.anon()
    assert login(client, lab.fleet.admin_token).status_code == 303
    return client


@pytest.mark.parametrize("path", [*PAGES, "/ui/devices/dev_x"])
def test_every_page_needs_a_session(lab: Lab, path: str) -> None:
    with lab.fleet.anon() as c:
        r = c.get(path)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/ui/login?next=/ui/")


def test_login_sets_a_strict_http_only_cookie_and_goes_where_it_was_asked(lab: Lab) -> None:
    with lab.fleet.anon() as c:
        form = c.get("/ui/login?next=/ui/rollouts")
        assert 'value="/ui/rollouts"' in form.text
        r = c.post("/ui/login", data={"token": lab.fleet.admin_token, "csrf": csrf_of(form.text), "next": "/ui/rollouts"})
        assert r.status_code == 303 and r.headers["location"] == "/ui/rollouts"
        cookie = r.headers["set-cookie"].lower()
        assert "edgeship_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
        assert "secure" not in cookie  # plain HTTP here; over HTTPS it is Secure (see below)
        assert c.get("/ui/rollouts").status_code == 200


def test_login_never_redirects_out_of_the_dashboard(lab: Lab) -> None:
    with lab.fleet.anon() as c:
        form = c.get("/ui/login")
        r = c.post("/ui/login", data={"token": lab.fleet.admin_token, "csrf": csrf_of(form.text), "next": "//evil.example/ui/"})
    assert r.headers["location"] == "/ui/fleet"


def test_a_bad_token_is_refused_with_a_reason(lab: Lab) -> None:
    with lab.fleet.anon() as c:
        form = c.get("/ui/login")
        r = c.post("/ui/login", data={"token": lab.fleet.admin_token[:-4] + "AAAA", "csrf": csrf_of(form.text)})
        assert r.status_code == 401 and "admin token not accepted" in r.text
        assert "edgeship_session" not in r.headers.get("set-cookie", "")
        r = c.post("/ui/login", data={"token": "not a token", "csrf": csrf_of(form.text)})
        assert r.status_code == 401 and "malformed admin token" in r.text
        assert c.get("/ui/fleet").status_code == 303  # no session came of either


def test_login_without_the_forms_csrf_token_is_refused(lab: Lab) -> None:
    with lab.fleet.anon() as c:
        c.get("/ui/login")
        r = c.post("/ui/login", data={"token": lab.fleet.admin_token})
        assert r.status_code == 403 and "CSRF" in r.text
    with lab.fleet.anon() as other:  # a token from someone else's login form
        token = csrf_of(other.get("/ui/login").text)
    with lab.fleet.anon() as c:
        c.get("/ui/login")
        assert c.post("/ui/login", data={"token": lab.fleet.admin_token, "csrf": token}).status_code == 403


def test_a_tampered_session_cookie_is_not_a_session(lab: Lab, browser: httpx.Client) -> None:
    cookie = browser.cookies["edgeship_session"]
    token_id, issued, mac = cookie.split(".")
    for forged in (f"{token_id}.{int(issued) + 3600}.{mac}", f"{token_id}.{issued}.{'0' * len(mac)}", "adm_x"):
        with lab.fleet.anon() as c:
            c.cookies.set("edgeship_session", forged, path="/ui")
            assert c.get("/ui/fleet").status_code == 303


def test_pages_show_the_fleet_releases_rollouts_and_experiments(lab: Lab, browser: httpx.Client) -> None:
    for path in PAGES:
        r = browser.get(path)
        assert r.status_code == 200, (path, r.text[:500])
        assert "script-src 'self'" in r.headers["content-security-policy"]
    fleet = browser.get("/ui/fleet").text
    assert all(f"cam-{i:02d}" in fleet for i in range(1, 7)) and "app@1.0.0" in fleet
    berlin = browser.get("/ui/fleet", params={"tag": "site=paris"}).text
    assert "cam-05" in berlin and "cam-01" not in berlin
    assert "must be written key=value" in browser.get("/ui/fleet", params={"tag": "paris"}).text

    device = lab.devices[0]
    page = browser.get(f"/ui/devices/{device.id}").text
    assert "answers are quick" in page and "4/5" in page and "committed" in page and "Europe/Berlin" in page
    assert browser.get("/ui/devices/dev_doesnotexist00").status_code == 404

    releases = browser.get("/ui/releases").text
    assert "app@1.1.0" in releases and "weights" in releases and "sha256:" in releases
    assert "Deltas" in releases and "may roll back to app@1.0.0" in releases

    rollouts = browser.get("/ui/rollouts").text
    assert lab.rollout_id in rollouts and "50%" in rollouts and 'action="/ui/rollouts/' + lab.rollout_id + '/pause"' in rollouts
    assert "devices per state" in rollouts  # the chart of the devices' state events

    experiments = browser.get("/ui/experiments").text
    assert lab.experiment_id in experiments and "too early to tell" in experiments


def test_pause_and_resume_by_form_need_the_sessions_csrf_token(lab: Lab, browser: httpx.Client) -> None:
    action = f"/ui/rollouts/{lab.rollout_id}"
    assert lab.rollout()["status"] == "rolling"
    assert browser.post(f"{action}/pause", data={}).status_code == 403
    assert browser.post(f"{action}/pause", data={"csrf": "x" * 64}).status_code == 403
    assert lab.rollout()["status"] == "rolling"

    csrf = csrf_of(browser.get("/ui/rollouts").text)
    r = browser.post(f"{action}/pause", data={"csrf": csrf, "reason": "field team"})
    assert r.status_code == 303 and r.headers["location"] == f"/ui/rollouts#{lab.rollout_id}"
    assert (lab.rollout()["status"], lab.rollout()["reason"]) == ("paused", "field team")
    again = browser.post(f"{action}/pause", data={"csrf": csrf})
    assert again.status_code == 409 and "only a running rollout pauses" in again.text
    assert browser.post(f"{action}/resume", data={"csrf": csrf}).status_code == 303
    assert lab.rollout()["status"] == "rolling"
    assert browser.post(f"{action}/explode", data={"csrf": csrf}).status_code == 404


def test_logout_needs_csrf_and_ends_the_session(lab: Lab) -> None:
    with lab.fleet.anon() as c:
        login(c, lab.fleet.admin_token)
        assert c.post("/ui/logout", data={}).status_code == 403
        assert c.post("/ui/logout", data={"csrf": csrf_of(c.get("/ui/fleet").text)}).status_code == 303
        assert c.get("/ui/fleet").status_code == 303


def test_a_session_is_good_on_every_instance_sharing_the_data_dir(lab: Lab, browser: httpx.Client) -> None:
    with running_server(lab.fleet.server.data_dir) as second, httpx.Client(base_url=second.url) as c:
        c.cookies.set("edgeship_session", browser.cookies["edgeship_session"], path="/ui")
        assert c.get("/ui/rollouts").status_code == 200


def test_over_https_the_cookie_is_secure_and_sessions_expire(lab: Lab, browser: httpx.Client) -> None:
    from fastapi.testclient import TestClient

    from edgeship.server.app import create_app
    from edgeship.server.ui.session import SESSION_TTL_S

    app = create_app(ServerSettings(data_dir=lab.fleet.server.data_dir, migrate=False))
    with TestClient(app, base_url="https://testserver") as c:
        form = c.get("/ui/login")
        r = c.post("/ui/login", data={"token": lab.fleet.admin_token, "csrf": csrf_of(form.text)}, follow_redirects=False)
        assert r.status_code == 303 and "secure" in r.headers["set-cookie"].lower()
    cookie = browser.cookies["edgeship_session"]
    with app.state.ctx.db.read() as session:
        assert app.state.ui.signer.admin_of(session, cookie, time.time()) is not None
        assert app.state.ui.signer.admin_of(session, cookie, time.time() + SESSION_TTL_S + 1) is None


def test_a_device_page_shows_its_newest_events_however_long_its_log(lab: Lab, browser: httpx.Client) -> None:
    device = lab.devices[3]
    for batch in range(3):  # more than the page reads: the newest must still be there
        lab.send(device, *[event("metrics", data={"n": batch * 500 + i}) for i in range(500)])
    lab.send(device, event("error", data={"why": "disk full on /data"}))
    page = browser.get(f"/ui/devices/{device.id}").text
    assert "disk full on /data" in page and '{"n": 1499}' in page and '{"n": 0}' not in page


def test_abort_by_form_orders_devices_back(lab: Lab, browser: httpx.Client) -> None:
    """Last in this module: it ends the lab's rollout."""
    csrf = csrf_of(browser.get("/ui/rollouts").text)
    page = browser.get("/ui/rollouts").text
    assert 'name="rollback" value="true"' in page and "Abort and roll back" in page  # app@1.1.0 signs a rollback to 1.0.0
    assert browser.post(f"/ui/rollouts/{lab.rollout_id}/abort", data={"csrf": csrf, "rollback": "true", "reason": "bad build"}).status_code == 303
    rollout = lab.rollout()
    assert (rollout["status"], rollout["rollback"], rollout["reason"]) == ("aborted", True, "bad build")
    assert f'section class="card rollout" id="{lab.rollout_id}" data-status="aborted"' in browser.get("/ui/rollouts").text
    assert 'action="/ui/rollouts/' + lab.rollout_id not in browser.get("/ui/rollouts").text  # no buttons on a finished rollout
