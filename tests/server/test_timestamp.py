"""The online timestamp job re-signs before expiry, and devices keep verifying."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from edgeship.cli.main import run
from tests.server.conftest import Fleet


def test_timestamp_is_resigned_before_it_expires(new_fleet: Callable[..., Fleet], tmp_path: Path) -> None:
    # A margin longer than the timestamp's whole validity: every check finds it due.
    fleet = new_fleet("--timestamp-margin-s", "90000", "--timestamp-check-s", "0.2")
    first = fleet.admin.get("/v1/admin/repository").json()["timestamp_version"]
    deadline = time.monotonic() + 10
    while fleet.admin.get("/v1/admin/repository").json()["timestamp_version"] < first + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    now = fleet.admin.get("/v1/admin/repository").json()
    assert now["timestamp_version"] >= first + 2
    assert '"message": "re-signed timestamp"' in fleet.server.logs()
    d = fleet.enroll()
    repo = fleet.url.replace("://", f"://{d.id}:{d.secret}@") + "/repo"
    root = fleet.workspace / "repository" / "metadata" / "1.root.json"
    assert run(["verify", "app@1.0.0", "--repo", repo, "--root", str(root), "--metadata-dir", str(tmp_path / "trust")]) == 0


def test_fresh_timestamp_is_left_alone(new_fleet: Callable[..., Fleet]) -> None:
    fleet = new_fleet("--timestamp-margin-s", "600", "--timestamp-check-s", "0.1")
    first = fleet.admin.get("/v1/admin/repository").json()["timestamp_version"]
    time.sleep(0.6)
    assert fleet.admin.get("/v1/admin/repository").json()["timestamp_version"] == first
