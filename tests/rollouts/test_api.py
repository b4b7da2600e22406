"""The rollout, experiment and webhook API on a real server (SQLite and PostgreSQL), without agents."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeship.cli.main import run
from tests.helpers.server import running_server
from tests.rollouts.conftest import Receiver
from tests.server.conftest import Fleet, cli, database_url, fleet, new_fleet  # noqa: F401 - fixtures

ROLLOUTS = "/v1/admin/rollouts"


def checkin(server: Fleet, device: object) -> dict:
    with server.anon() as c:
        r = c.post(f"/v1/devices/{device.id}/checkin", json={"state": "idle"}, headers=device.auth)  # type: ignore[attr-defined]
    assert r.status_code == 200, r.text
    return r.json()["assignment"]


def test_a_rollout_answers_check_in_with_its_window_and_notice_and_beats_a_plain_order(fleet: Fleet) -> None:  # noqa: F811
    site = f"ro-{uuid.uuid4().hex[:6]}"
    device = fleet.enroll({"site": site})
    assert fleet.admin.post("/v1/admin/assignments", json={"release": "app@1.0.0", "device_id": device.id}).status_code == 201
    assert checkin(fleet, device)["rollout_id"] is None  # the plain order
    body = {"release": "app", "target": f"site={site}", "pilot": "", "stages": "100", "bake": "0", "window": "02:00-04:00", "notice": "1h"}
    r = fleet.admin.post(ROLLOUTS, json=body)
    assert r.status_code == 201, r.text
    rollout = r.json()
    assert rollout["release"] == "app@1.0.0" and rollout["previous"] is None and rollout["status"] == "rolling"
    assert [(s["name"], s["targeted"]) for s in rollout["stages"]] == [("100%", 1)]
    assert checkin(fleet, device) == {
        "name": "app", "version": "1.0.0", "release_id": checkin(fleet, device)["release_id"], "rollback": False,
        "rollout_id": rollout["id"], "window": {"start": "02:00", "end": "04:00"}, "notice_s": 3600,
    }
    clash = fleet.admin.post(ROLLOUTS, json=body)
    assert clash.status_code == 409 and rollout["id"] in clash.json()["error"]["message"]
    assert fleet.admin.post(f"{ROLLOUTS}/{rollout['id']}/pause", json={}).json()["status"] == "paused"
    assert fleet.admin.post(f"{ROLLOUTS}/{rollout['id']}/pause", json={}).status_code == 409
    # app@1.0.0 was pushed first: no signed rollback_to, so no rollback can be ordered.
    refused = fleet.admin.post(f"{ROLLOUTS}/{rollout['id']}/abort", json={"rollback": True})
    assert refused.status_code == 409 and "no previous release" in refused.json()["error"]["message"]
    aborted = fleet.admin.post(f"{ROLLOUTS}/{rollout['id']}/abort", json={"rollback": False, "reason": "test over"}).json()
    assert (aborted["status"], aborted["reason"]) == ("aborted", "test over")
    assert checkin(fleet, device)["rollout_id"] is None  # held by the abort: the plain order is back
    assert fleet.admin.get(f"{ROLLOUTS}/{rollout['id']}").json()["status"] == "aborted"
    assert fleet.admin.get(f"{ROLLOUTS}/ro_nope").status_code == 404
    assert fleet.admin.post(f"{ROLLOUTS}/{rollout['id']}/explode", json={}).status_code == 404


@pytest.mark.parametrize(("field", "value", "says"), [
    ("stages", "50,10", "increasing"),
    ("window", "25:00-03:00", "impossible time"),
    ("max_failure", "150%", "below 100%"),
    ("release", "nosuch@1.0.0", "not published"),
])
def test_bad_rollout_options_are_refused_with_what_to_fix(fleet: Fleet, field: str, value: str, says: str) -> None:  # noqa: F811
    r = fleet.admin.post(ROLLOUTS, json={"release": "app@1.0.0", "target": "site=nowhere", field: value})
    assert r.status_code in (404, 422) and says in r.json()["error"]["message"], r.text


def test_an_experiment_splits_the_fleet_into_two_stable_arms(new_fleet: Callable[..., Fleet], tmp_path: Path,  # noqa: F811
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    f = new_fleet()
    (tmp_path / "config.json").write_text('{"threshold": 0.6}')
    assert cli("release", "push", "app", "-v", "2.0.0", "-c", f"config={tmp_path / 'config.json'}", "-w", f.workspace) == 0
    assert cli("server", "sync", "--server", f.url, "-w", f.workspace) == 0
    devices = [f.enroll({"site": "ab"}) for _ in range(12)]
    f.enroll({"site": "elsewhere"})

    def cli_json(*args: str) -> object:
        capsys.readouterr()
        code = run([*args, "--server", f.url, "-w", str(f.workspace), "--json"])
        out = capsys.readouterr()
        assert code == 0, out.err
        return json.loads(out.out)

    started = cli_json("experiment", "start", "app@1.0.0", "app@2.0.0", "--split", "50", "--target", "site=ab", "--duration", "1h")
    assert started["devices_a"] + started["devices_b"] == 12 and started["devices_a"] > 0 and started["devices_b"] > 0
    arms = {d.id: checkin(f, d)["version"] for d in devices}
    assert sorted(arms.values()).count("1.0.0") == started["devices_a"]
    assert {d.id: checkin(f, d)["version"] for d in devices} == arms  # stable
    status = cli_json("experiment", "status", started["id"])
    assert status["verdict"] == "too early to tell" and "fewer than" in status["reason"]
    assert [e["id"] for e in cli_json("experiment", "status")] == [started["id"]]

    assert f.admin.post("/v1/admin/webhooks", json={"url": "ftp://x", "secret": "s" * 16}).status_code == 422
    assert f.admin.post("/v1/admin/webhooks", json={"url": "http://127.0.0.1:9/x", "secret": "short"}).status_code == 422
    hook = cli_json("webhook", "add", "http://127.0.0.1:9/hook", "--secret", "s" * 20)
    assert [h["id"] for h in cli_json("webhook", "list")] == [hook["id"]] and "secret" not in hook
    assert cli_json("webhook", "remove", hook["id"])["id"] == hook["id"]
    assert cli_json("webhook", "list") == []


def test_a_latency_regression_against_the_previous_release_pauses_the_rollout(new_fleet: Callable[..., Fleet], tmp_path: Path) -> None:  # noqa: F811
    f = new_fleet("--rollout-check-s", "0.3")
    (tmp_path / "config.json").write_text('{"threshold": 0.7}')
    assert cli("release", "push", "app", "-v", "2.0.0", "-c", f"config={tmp_path / 'config.json'}", "-w", f.workspace) == 0
    assert cli("server", "sync", "--server", f.url, "-w", f.workspace) == 0
    devices = [f.enroll({"site": "hr"}) for _ in range(20)]
    ids = {v: f.admin.post("/v1/admin/assignments", json={"release": f"app@{v}", "device_id": devices[0].id}).json()["release_id"]
           for v in ("1.0.0", "2.0.0")}
    with f.anon() as c:
        for i, d in enumerate(devices):
            # Half already run 2.0.0 and answer three times slower than the half on 1.0.0.
            version, latency = ("2.0.0", 300.0) if i % 2 else ("1.0.0", 100.0)
            ref = {"name": "app", "version": version, "release_id": ids[version]}
            assert c.post(f"/v1/devices/{d.id}/checkin", json={"state": "committed", "current": ref}, headers=d.auth).status_code == 200
            event = {"id": uuid.uuid4().hex, "time": "2026-02-02T10:00:00Z", "type": "metrics", "release": f"app@{version}",
                     "data": {"error_rate": 0.01, "latency_p95_ms": latency}}
            assert c.post(f"/v1/devices/{d.id}/events", json={"events": [event]}, headers=d.auth).status_code == 200
    rollout = f.admin.post(ROLLOUTS, json={"release": "app@2.0.0", "target": "site=hr", "pilot": "", "stages": "100", "bake": "1h"}).json()
    assert rollout["previous"] == "app@1.0.0"
    deadline = time.monotonic() + 15
    while (shown := f.admin.get(f"{ROLLOUTS}/{rollout['id']}").json())["status"] != "paused" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert shown["status"] == "paused", shown
    assert shown["reason"].startswith("health regression: latency p95 300 ms vs 100 ms")
    assert shown["health_regressions"] and shown["stages"][0]["done"] == 10


def test_two_instances_decide_each_rollout_once_and_send_each_webhook_once(new_fleet: Callable[..., Fleet]) -> None:  # noqa: F811
    f = new_fleet("--rollout-check-s", "0.1", "--webhook-retry-s", "0.1")
    receiver = Receiver()
    url = receiver.start()
    try:
        with running_server(f.server.data_dir, "", ("--rollout-check-s", "0.1", "--webhook-retry-s", "0.1")):
            assert f.admin.post("/v1/admin/webhooks", json={"url": url, "secret": "s" * 20}).status_code == 201
            release_id = ""
            for _ in range(4):  # one after the other: a name has one unfinished rollout at a time
                d = f.enroll()
                body = {"release": "app@1.0.0", "device_ids": [d.id], "pilot": "", "stages": "100", "bake": "0"}
                rollout = f.admin.post(ROLLOUTS, json=body).json()
                release_id = release_id or checkin(f, d)["release_id"]
                ref = {"name": "app", "version": "1.0.0", "release_id": release_id}
                with f.anon() as c:
                    c.post(f"/v1/devices/{d.id}/checkin", json={"state": "committed", "current": ref}, headers=d.auth)
                deadline = time.monotonic() + 10
                while f.admin.get(f"{ROLLOUTS}/{rollout['id']}").json()["status"] != "completed":
                    assert time.monotonic() < deadline, "the rollout did not complete"
                    time.sleep(0.1)
            deadline = time.monotonic() + 10
            while len(receiver.posts) < 4 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1)  # time for a duplicate to show up, if either instance were to send one
    finally:
        receiver.stop()
    deliveries = [h["x-edgeship-delivery"] for h, _ in receiver.posts]
    assert len(deliveries) == len(set(deliveries)) == 4
    assert {p["type"] for p in receiver.payloads("s" * 20)} == {"rollout.completed"}


def test_a_rollout_may_roll_back_past_a_bad_release_only_to_a_signed_version(new_fleet: Callable[..., Fleet], tmp_path: Path) -> None:  # noqa: F811
    f = new_fleet()
    for version in ("2.0.0", "2.1.0", "2.2.0"):  # 2.1.0 plays the bad release in between
        (tmp_path / "config.json").write_text(json.dumps({"version": version}))
        assert cli("release", "push", "app", "-v", version, "-c", f"config={tmp_path / 'config.json'}", "-w", f.workspace) == 0
    assert cli("server", "sync", "--server", f.url, "-w", f.workspace) == 0
    body = {"release": "app@2.2.0", "target": "site=none", "on_fail": "rollback"}
    default = f.admin.post(ROLLOUTS, json=body).json()
    assert default["previous"] == "app@2.1.0"  # the version pushed just before
    f.admin.post(f"{ROLLOUTS}/{default['id']}/abort", json={"rollback": False})
    past_bad = f.admin.post(ROLLOUTS, json={**body, "rollback_to": "2.0.0"})
    assert past_bad.status_code == 201 and past_bad.json()["previous"] == "app@2.0.0"
    f.admin.post(f"{ROLLOUTS}/{past_bad.json()['id']}/abort", json={"rollback": False})
    unsigned = f.admin.post(ROLLOUTS, json={**body, "rollback_to": "0.9.0"})
    assert unsigned.status_code == 422 and "may roll back only to 2.1.0, 2.0.0, 1.0.0" in unsigned.json()["error"]["message"]
