"""The online timestamp job re-signs before expiry, and devices keep verifying."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import anyio
import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from edgeship.cli.main import run
from edgeship.server.app import _timestamp_job
from edgeship.server.bootstrap import init_data_dir
from edgeship.server.db import Database
from edgeship.server.repository import ServerRepository
from edgeship.server.settings import ServerSettings
from edgeship.trust.repository import Expiry
from edgeship.workspace import Workspace
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


def test_the_timestamp_job_outlives_a_database_blip(tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = ServerSettings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", timestamp_margin_s=90000, timestamp_check_s=0.05)
    init_data_dir(settings, Workspace.init(tmp_path / "ws", passphrase=None))
    db = Database(settings.database_url)
    repo = ServerRepository(settings.data_dir / "repository", settings.data_dir / "keys", Expiry(), db)
    first = repo.versions()["timestamp_version"]
    refresh, calls = repo.cache.refresh, []

    def blip(session: Session) -> bool:  # the first check's read fails, as when the database restarts
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("SELECT", {}, Exception("server closed the connection unexpectedly"))
        return refresh(session)

    monkeypatch.setattr(repo.cache, "refresh", blip)

    async def run_job() -> None:
        with anyio.move_on_after(1):
            await _timestamp_job(SimpleNamespace(repo=repo, db=db, settings=settings))  # type: ignore[arg-type]

    try:
        anyio.run(run_job)
        assert repo.versions()["timestamp_version"] > first
        assert "cannot refresh the timestamp" in caplog.text
    finally:
        db.dispose()
