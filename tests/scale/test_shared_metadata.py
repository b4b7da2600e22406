"""Two instances' repositories (own data dirs, one database): signing starts from the newest
metadata in the database, whatever the local cache held, and each cache follows the database."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, update
from tuf.api.metadata import Metadata

from edgeship.samples.llama import write_tiny_llama
from edgeship.server import shared_metadata
from edgeship.server.bootstrap import init_data_dir
from edgeship.server.db import Database
from edgeship.server.models import RepoMetadata
from edgeship.server.repository import ServerRepository, hold_lock
from edgeship.server.settings import ServerSettings
from edgeship.server.storage import LocalStorage
from edgeship.trust.repository import Expiry
from edgeship.workspace import Workspace
from tests.agent.harness import Releases

Instance = Callable[[str, Workspace], ServerRepository]


@pytest.fixture
def instance(fresh_database_url: str, tmp_path: Path) -> Iterator[Instance]:
    """Makes an instance's repository: ``server init`` of its own data dir over the shared database."""
    made: list[ServerRepository] = []

    def make(name: str, ws: Workspace) -> ServerRepository:
        settings = ServerSettings(data_dir=tmp_path / name, database_url=fresh_database_url)
        init_data_dir(settings, ws)
        made.append(ServerRepository(settings.data_dir / "repository", settings.data_dir / "keys", Expiry(), Database(fresh_database_url)))
        return made[-1]

    yield make
    for repo in made:
        repo.db.dispose()  # before a PostgreSQL schema is dropped


def _targets(ws: Workspace) -> bytes:
    repo = ws.repository()
    return (repo.metadata_dir / f"{repo.targets().signed.version}.targets.json").read_bytes()


def _uploaded(ws: Workspace, root: Path) -> LocalStorage:
    """A blob store holding every file the workspace's targets name, as `release push` uploads them."""
    storage = LocalStorage(root, root / "uploads")
    for path, target in ws.repository().targets().signed.targets.items():
        storage.put_file(f"blobs/sha256/{target.hashes['sha256']}", ws.repo_dir / path)
    return storage


def test_an_instance_with_a_stale_cache_signs_on_top_of_the_newest_metadata(instance: Instance, tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", passphrase=None)
    releases = Releases(ws, write_tiny_llama(tmp_path / "model.gguf"), tmp_path / "src")
    releases.publish("1.0.0")
    a, b = instance("a", ws), instance("b", ws)
    before = a.versions()
    assert b.versions() == before  # b's cache filled from the database, not from the workspace
    releases.publish("2.0.0")
    v3 = _targets(ws)
    releases.publish("3.0.0")
    v4 = _targets(ws)
    storage = _uploaded(ws, tmp_path / "store")

    a.publish(storage, v3, [])
    signed_by_a = (a.repo.metadata_dir / f"{before['snapshot_version'] + 1}.snapshot.json").read_bytes()
    # b still caches the old generation; publishing must not sign that snapshot version again.
    assert b.cache.generation is not None and b.cache.generation < a.cache.generation  # type: ignore[operator]
    b.publish(storage, v4, [])

    after = a.versions()  # a refreshes from the database: it sees what b signed
    assert after["targets_version"] == before["targets_version"] + 2
    assert after["snapshot_version"] == before["snapshot_version"] + 2
    assert after["timestamp_version"] == before["timestamp_version"] + 2
    assert (b.repo.metadata_dir / f"{before['snapshot_version'] + 1}.snapshot.json").read_bytes() == signed_by_a
    assert {e["version"] for e in a.releases()} == {"1.0.0", "2.0.0", "3.0.0"}
    assert (a.repo.metadata_dir / "timestamp.json").read_bytes() == (b.repo.metadata_dir / "timestamp.json").read_bytes()


def test_the_timestamp_is_resigned_once_when_instances_race(instance: Instance, tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", passphrase=None)
    a, b = instance("a", ws), instance("b", ws)
    db = a.db
    short = ServerRepository(a.repo.path, tmp_path / "a" / "keys", Expiry(timestamp=0.01), db)
    assert short.refresh_timestamp_if_due(timedelta(days=2)) is True  # expires in ~15 min now
    start = a.versions()["timestamp_version"]
    results: list[bool] = []
    racers = [threading.Thread(target=lambda r=r: results.append(r.refresh_timestamp_if_due(timedelta(hours=1)))) for r in (a, b)]
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


def test_a_failed_signing_leaves_nothing_behind_in_the_cache(instance: Instance, tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", passphrase=None)
    a = instance("a", ws)
    before = a.versions()
    with pytest.raises(RuntimeError), a._signing():
        a.repo._publish_snapshot()  # a snapshot and a timestamp written locally, never committed
        raise RuntimeError("the database went away before the commit")
    assert not (a.repo.metadata_dir / f"{before['snapshot_version'] + 1}.snapshot.json").exists()
    assert a.versions() == before  # the next refresh rewrote the timestamp from the database
    a.refresh_timestamp_if_due(timedelta(days=2))
    assert a.versions()["timestamp_version"] == before["timestamp_version"] + 1


def test_a_data_dir_from_before_the_shared_metadata_seeds_the_database_once(instance: Instance, tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", passphrase=None)
    a = instance("a", ws)
    before = a.versions()
    with a.db.write() as session:
        session.execute(delete(RepoMetadata))  # as after upgrading a server that kept it on disk only
    assert a.adopt() is True  # what the server does at start
    assert a.adopt() is False  # a second instance starting finds it there
    b = instance("b", ws)
    assert b.versions() == before
    with a.db.read() as session:
        assert session.scalar(select(func.count()).select_from(RepoMetadata)) == len(list(a.repo.metadata_dir.glob("*.json")))


def _db_timestamp_version(repo: ServerRepository) -> int:
    with repo.db.read() as session:
        return Metadata.from_bytes(shared_metadata.read(session, "timestamp.json") or b"").signed.version


def test_a_failed_signing_does_not_undo_another_threads_signing(instance: Instance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = Workspace.init(tmp_path / "ws", passphrase=None)
    a = instance("a", ws)
    start = _db_timestamp_version(a)
    in_cleanup, b_signed = threading.Event(), threading.Event()

    def slow_discard(written: dict[str, bytes]) -> None:  # it wrote nothing to discard
        in_cleanup.set()
        b_signed.wait(1)  # never set with the fix: b waits for the cleanup to finish

    monkeypatch.setattr(a.cache, "discard", slow_discard)

    failed = threading.Event()

    def failing() -> None:
        with pytest.raises(RuntimeError), a._signing():
            raise RuntimeError("the database went away before the commit")
        failed.set()

    def signing() -> None:
        with a._signing():
            a.repo.refresh_timestamp()
            b_signed.set()
            failed.wait(1)  # the failed signing's cleanup, if it could run now, has run

    failer = threading.Thread(target=failing)
    failer.start()
    assert in_cleanup.wait(10)
    signer = threading.Thread(target=signing)
    signer.start()
    failer.join(10)
    signer.join(10)
    assert _db_timestamp_version(a) == start + 1  # the timestamp b signed was stored with its commit
    assert a.versions()["timestamp_version"] == start + 1


def test_a_worker_sharing_the_data_dir_signs_on_top_of_the_database_timestamp(instance: Instance, fresh_database_url: str, tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", passphrase=None)
    a = instance("a", ws)
    worker = ServerRepository(a.repo.path, tmp_path / "a" / "keys", Expiry(), Database(fresh_database_url))
    try:
        start = a.versions()["timestamp_version"]
        old = (a.repo.metadata_dir / "timestamp.json").read_bytes()
        assert a.refresh_timestamp_if_due(timedelta(days=365)) is True
        assert worker.versions()["timestamp_version"] == start + 1  # the worker's cache follows
        # The other worker, slow to refresh, writes the older timestamp over the one a signed.
        (a.repo.metadata_dir / "timestamp.json").write_bytes(old)
        assert worker.refresh_timestamp_if_due(timedelta(days=365)) is True
        assert _db_timestamp_version(a) == start + 2
        assert a.versions()["timestamp_version"] == start + 2
    finally:
        worker.db.dispose()


def test_a_cache_ahead_of_a_restored_database_is_rewritten_from_it(instance: Instance, tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", passphrase=None)
    a = instance("a", ws)
    before = a.versions()
    restored = (a.repo.metadata_dir / "timestamp.json").read_bytes()
    a.refresh_timestamp_if_due(timedelta(days=365))
    signed_after_backup = a.cache.generation
    with a.db.write() as session:  # as a restore of the backup taken before that (timestamp only) signing
        session.execute(update(RepoMetadata).where(RepoMetadata.name == "timestamp.json").values(data=restored, generation=signed_after_backup - 1))  # type: ignore[operator]
    assert a.versions() == before
    assert (a.repo.metadata_dir / "timestamp.json").read_bytes() == restored


def test_files_of_a_signing_killed_before_its_commit_are_removed_at_start(instance: Instance, tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", passphrase=None)
    releases = Releases(ws, write_tiny_llama(tmp_path / "model.gguf"), tmp_path / "src")
    releases.publish("1.0.0")
    a = instance("a", ws)
    before = a.versions()
    releases.publish("2.0.0")
    v2 = _targets(ws)
    storage = _uploaded(ws, tmp_path / "store")
    meta = a.repo.metadata_dir
    # What a SIGKILL between writing the files and the commit leaves behind.
    stray = [f"{before['targets_version'] + 1}.targets.json", f"{before['snapshot_version'] + 1}.snapshot.json"]
    (meta / stray[0]).write_bytes(v2)
    (meta / stray[1]).write_bytes((meta / f"{before['snapshot_version']}.snapshot.json").read_bytes())

    restarted = ServerRepository(a.repo.path, tmp_path / "a" / "keys", Expiry(), a.db)
    assert restarted.adopt() is False
    assert not any((meta / name).exists() for name in stray)
    assert restarted.versions() == before
    restarted.publish(storage, v2, [])
    after = restarted.versions()
    assert after["targets_version"] == before["targets_version"] + 1 and after["snapshot_version"] == before["snapshot_version"] + 1
    with a.db.read() as session:
        assert shared_metadata.read(session, stray[1]) == (meta / stray[1]).read_bytes()
