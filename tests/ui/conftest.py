"""A real server with a small fleet to look at: two releases (the second shipped with a delta),
devices on them with events and feedback, a rollout in its pilot (two devices), an experiment."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from edgeship.workspace import Workspace
from tests.server.conftest import Device, Fleet, cli, start_fleet

SITE = "berlin"


@dataclass
class Lab:
    fleet: Fleet
    devices: list[Device]
    rollout_id: str
    experiment_id: str
    release_ids: dict[str, str]  # version -> release ID

    def rollout(self) -> dict:
        return self.fleet.admin.get(f"/v1/admin/rollouts/{self.rollout_id}").json()

    def send(self, device: Device, *events: dict) -> None:
        with self.fleet.anon() as c:
            r = c.post(f"/v1/devices/{device.id}/events", json={"events": list(events)}, headers=device.auth)
        assert r.status_code == 200, r.text

    def checkin(self, device: Device, state: str, version: str) -> dict | None:
        """Report what the device runs; returns what it is told to run."""
        current = {"name": "app", "version": version, "release_id": self.release_ids[version]}
        with self.fleet.anon() as c:
            r = c.post(f"/v1/devices/{device.id}/checkin", json={"state": state, "current": current}, headers=device.auth)
        assert r.status_code == 200, r.text
        return r.json()["assignment"]


def event(type_: str, **kw: object) -> dict:
    return {"id": uuid.uuid4().hex, "time": "2026-11-25T12:00:00Z", "type": type_, **kw}


def publish_second_release(fleet: Fleet, root: Path) -> None:
    """app@1.1.0: the same weights with the first 64 KiB changed, so it ships as a delta."""
    files = root / "v2"
    files.mkdir()
    (files / "config.json").write_text('{"threshold": 0.6}')
    (files / "weights.bin").write_bytes(b"\x01" * 65536 + fleet.blob[65536:])
    assert cli("release", "push", "app", "-v", "1.1.0", "-c", f"config={files / 'config.json'}", "-c", f"weights:file={files / 'weights.bin'}", "-w", fleet.workspace) == 0
    assert cli("server", "sync", "--server", fleet.url, "-w", fleet.workspace) == 0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("ui")
    fleet = start_fleet(root, "")
    try:
        publish_second_release(fleet, root)
        devices = []
        for i in range(6):
            facts = {"arch": "aarch64", "ram": 8 << 30, "hostname": f"cam-{i + 1:02d}", "timezone": "Europe/Berlin"}
            tags = {"site": SITE, "ring": "pilot"} if i < 2 else {"site": SITE} if i < 4 else {"site": "paris"}
            devices.append(fleet.enroll(tags, facts=facts))
        release_ids = {r.version: r.release_id for r in Workspace.open(fleet.workspace).releases("app")}
        lab = Lab(fleet, devices, "", "", release_ids)
        for d in devices:
            lab.checkin(d, "committed", "1.0.0")
            lab.send(d, event("state", state="committed", release="app@1.0.0"))
        lab.send(devices[0], event("feedback", release="app@1.0.0", data={"rating": 4, "comment": "answers are quick"}))
        r = fleet.admin.post("/v1/admin/rollouts", json={"release": "app@1.1.0", "target": f"site={SITE}", "pilot": "ring=pilot", "stages": "50,100", "bake": "1h"})
        assert r.status_code == 201, r.text
        lab.rollout_id = r.json()["id"]
        for d in devices[:4]:
            lab.send(d, event("state", state="downloading", release="app@1.1.0"))
        r = fleet.admin.post("/v1/admin/experiments", json={"release_a": "app@1.0.0", "release_b": "app@1.1.0", "target": "site=paris", "duration": "2h"})
        assert r.status_code == 201, r.text
        lab.experiment_id = r.json()["id"]
        yield lab
    finally:
        fleet.admin.close()
        fleet.server.stop()


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def login(client: httpx.Client, token: str) -> httpx.Response:
    form = client.get("/ui/login")
    return client.post("/ui/login", data={"token": token, "csrf": csrf_of(form.text), "next": "/ui/fleet"})
