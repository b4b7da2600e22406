"""Two instances' repositories (own data dirs, one database): signing starts from the newest
metadata in the database, whatever the local cache held, and each cache follows the database."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from edgeship.samples.llama import write_tiny_llama
from edgeship.server.bootstrap import init_data_dir
from edgeship.server.db import Database
from edgeship.server.repository import ServerRepository, hold_lock
from edgeship.server.settings import ServerSettings
from edgeship.server.storage import LocalStorage
from edgeship.trust.repository import Expiry
from edgeship.workspace import Workspace
from tests.agent.harness import Releases
from tests.helpers.server import postgres_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """One database URL both instances use."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    with postgres_schema() as url:
        yield url


def _instance(tmp_path: Path, name: str, url: str, ws: Workspace) -> tuple[ServerRepository, Database]:
    settings = ServerSettings(data_dir=tmp_path / name, database_url=url)
    init_data_dir(settings, ws)
    db = Database(url)
    return ServerRepository(settings.data_dir / "repository", settings.data_dir / "keys", Expiry(), db), db


def _targets(ws: Workspace) -> bytes:
    repo = ws.repository()
    return (repo.metadata_dir / f"{repo.targets().signed.version}.targets.json").read_bytes()


def _uploaded(ws: Workspace, root: Path) -> LocalStorage:
    """A blob store holding every file the workspace's targets name, as `release push` uploads them."""
    storage = LocalStorage(root, root / "uploads")
    for path, target in ws.repository().targets().signed.targets.items():
        storage.put_file(f"blobs/sha256/{target.hashes['sha256']}", ws.repo_dir / path)
    return storage


def test_an_instance_with_a_stale_cache_signs_on_top_of_the_newest_metadata(shared_url: str, tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", passphrase=None)
    releases = Releases(ws, write_tiny_llama(tmp_path / "model.gguf"), tmp_path / "src")
    releases.publish("1.0.0")
    a, db = _instance(tmp_path, "a", shared_url, ws)
    b, _ = _instance(tmp_path, "b", shared_url, ws)
    try:
        before = a.versions()
        assert b.versions() == before  # b's cache filled from the database, not from the workspace
        releases.publish("2.0.0")
        v3 = _targets(ws)
        releases.publish("3.0.0")
        v4 = _targets(ws)
        storage = _uploaded(ws, tmp_path / "store")

        a.publish(db, storage, v3, [])
        signed_by_a = (a.repo.metadata_dir / f"{before['snapshot_version'] + 1}.snapshot.json").read_bytes()
        # b still caches the old generation; publishing must not sign that snapshot version again.
        assert b.cache.generation is not None and b.cache.generation < a.cache.generation  # type: ignore[operator]
        b.publish(db, storage, v4, [])

        after = a.versions()  # a refreshes from the database: it sees what b signed
        assert after["targets_version"] == before["targets_version"] + 2
        assert after["snapshot_version"] == before["snapshot_version"] + 2
        assert after["timestamp_version"] == before["timestamp_version"] + 2
        assert (b.repo.metadata_dir / f"{before['snapshot_version'] + 1}.snapshot.json").read_bytes() == signed_by_a
        assert {e["version"] for e in a.releases()} == {"1.0.0", "2.0.0", "3.0.0"}
        assert (a.repo.metadata_dir / "timestamp.json").read_bytes() == (b.repo.metadata_dir / "timestamp.json").read_bytes()
    finally:
        db.dispose()
        b.db.dispose()


def test_the_timestamp_is_resigned_once_when_instances_race(shared_url: str, tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", passphrase=None)
    a, db = _instance(tmp_path, "a", shared_url, ws)
    b, _ = _instance(tmp_path, "b", shared_url, ws)
    short = ServerRepository(a.repo.path, tmp_path / "a" / "keys", Expiry(timestamp=0.01), db)
    try:
        assert short.refresh_timestamp_if_due(db, timedelta(days=2)) is True  # expires in ~15 min now
        start = a.versions()["timestamp_version"]
        results: list[bool] = []
        racers = [threading.Thread(target=lambda r=r: results.append(r.refresh_timestamp_if_due(r.db, timedelta(hours=1)))) for r in (a, b)]
        with db.write() as session:
            hold_lock(session, "repository")
            for t in racers:
                t.start()
            time.sleep(0.5)  # both found it due and wait for the lock
        for t in racers:
            t.join(10)
        assert sorted(results) == [False, True]  # the second read the first one's timestamp under the lock
        assert a.versions()["timestamp_version"] == b.versions()["timestamp_version"] == start + 1
        assert b.repo.signature_status("timestamp").startswith("valid")
    finally:
        db.dispose()
        b.db.dispose()


def test_a_failed_signing_leaves_nothing_behind_in_the_cache(shared_url: str, tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", passphrase=None)
    a, db = _instance(tmp_path, "a", shared_url, ws)
    try:
        before = a.versions()
        with pytest.raises(RuntimeError), a._signing(db):
            a.repo._publish_snapshot()  # a snapshot and a timestamp written locally, never committed
            raise RuntimeError("the database went away before the commit")
        assert not (a.repo.metadata_dir / f"{before['snapshot_version'] + 1}.snapshot.json").exists()
        assert a.versions() == before  # the next refresh rewrote the timestamp from the database
        a.refresh_timestamp_if_due(db, timedelta(days=2))
        assert a.versions()["timestamp_version"] == before["timestamp_version"] + 1
    finally:
        db.dispose()
