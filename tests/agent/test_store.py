"""The device store: staging by hard links, atomic switch and restore, GC, fsck."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from edgeship.agent.status_api import StatusServer
from edgeship.agent.store import CURRENT, PREVIOUS, DeviceStore
from edgeship.cli.main import run
from edgeship.store.digest import Digest
from tests.agent.conftest import install_locally
from tests.agent.harness import Releases


def test_stage_links_blobs_and_switch_moves_current_and_previous(releases: Releases, device_store: DeviceStore) -> None:
    m1, m2 = releases.publish("1.0.0"), releases.publish("1.1.0")
    r1 = install_locally(device_store, releases.ws, m1)
    device_store.switch(r1, None)
    assert device_store.link(CURRENT) == r1 and device_store.link(PREVIOUS) is None
    r2 = install_locally(device_store, releases.ws, m2)
    # The model is the same file in both releases: stored once, linked twice.
    model = device_store.blobs.path(Digest(m1.components[0].hexdigest))
    assert os.stat(model).st_nlink == 3  # the blob + two release dirs
    assert os.readlink(device_store.root / CURRENT) == f"releases/{r1}"
    device_store.switch(r2, r1)
    assert (device_store.link(CURRENT), device_store.link(PREVIOUS)) == (r2, r1)
    assert (device_store.root / CURRENT / "config.json").read_text() == '{"version": "1.1.0"}'
    device_store.switch(r2, r1)  # idempotent: a re-run after a crash changes nothing
    assert (device_store.link(CURRENT), device_store.link(PREVIOUS)) == (r2, r1)
    device_store.restore(r1, None)
    assert (device_store.link(CURRENT), device_store.link(PREVIOUS)) == (r1, None)


def test_switch_refuses_an_incomplete_release(releases: Releases, device_store: DeviceStore) -> None:
    m = releases.publish("1.0.0")
    rid = install_locally(device_store, releases.ws, m)
    os.unlink(device_store.release_dir(rid) / "config.json")
    assert not device_store.is_complete(rid)
    try:
        device_store.switch(rid, None)
    except Exception as exc:  # noqa: BLE001 - asserting the type right below
        assert "not completely installed" in str(exc)
    assert device_store.link(CURRENT) is None
    device_store.stage(rid)  # staging again repairs it
    assert device_store.is_complete(rid)


def test_gc_keeps_current_and_previous_only(releases: Releases, device_store: DeviceStore) -> None:
    ids = [install_locally(device_store, releases.ws, releases.publish(v)) for v in ("1.0.0", "1.1.0", "1.2.0")]
    device_store.switch(ids[1], ids[0])
    device_store.switch(ids[2], ids[1])
    stale = device_store.partial(Digest("0" * 64))
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"half a download")
    removed = device_store.gc({ids[2], ids[1]})
    assert not device_store.release_dir(ids[0]).exists()
    assert any(r.startswith("blob") for r in removed)  # the 1.0.0 config blob
    assert not stale.exists()
    assert device_store.is_complete(ids[1]) and device_store.is_complete(ids[2])
    assert device_store.fsck().clean


def test_fsck_finds_and_repairs_a_corrupt_blob(releases: Releases, device_store: DeviceStore) -> None:
    m1, m2 = releases.publish("1.0.0"), releases.publish("1.1.0")
    r1, r2 = install_locally(device_store, releases.ws, m1), install_locally(device_store, releases.ws, m2)
    device_store.switch(r1, None)
    device_store.switch(r2, r1)
    assert device_store.fsck().clean
    blob = device_store.blobs.path(Digest(m2.components[1].hexdigest))  # the 1.1.0 config
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as f:
        f.write(b"X")
    report = device_store.fsck()
    assert not report.clean and any("does not hash" in p for p in report.problems)
    assert any("`current` points at a broken release" in p for p in report.problems)
    repaired = device_store.fsck(repair=True)
    assert repaired.repaired
    # current fell back to the complete previous release; the store is clean again.
    assert device_store.link(CURRENT) == r1
    assert device_store.fsck().clean


def test_fsck_removes_an_unfinished_staging_dir(releases: Releases, device_store: DeviceStore) -> None:
    rid = install_locally(device_store, releases.ws, releases.publish("1.0.0"))
    (device_store.releases_dir / f".{rid}.staging").mkdir()
    assert not device_store.fsck().clean
    device_store.fsck(repair=True)
    assert device_store.fsck().clean


def test_fsck_cli_reports_and_moves_aside_a_damaged_journal(releases: Releases, device_store: DeviceStore,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    rid = install_locally(device_store, releases.ws, releases.publish("1.0.0"))
    device_store.switch(rid, None)
    (device_store.root / "journal.json").write_text("{half a record")
    assert run(["agent", "fsck", "--data-dir", str(device_store.root)]) == 1
    assert "journal" in capsys.readouterr().out
    assert run(["agent", "fsck", "--data-dir", str(device_store.root), "--repair"]) == 0
    assert (device_store.root / "journal.json.damaged").exists()
    capsys.readouterr()
    assert run(["agent", "fsck", "--data-dir", str(device_store.root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["clean"] is True


def test_status_api_serves_the_status_document(tmp_path: Path) -> None:
    status = tmp_path / "status.json"
    server = StatusServer(status, 0)
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/status"
        assert httpx.get(url).json() == {"state": "starting"}
        status.write_text('{"state": "staged", "job": {"switch_at": "2026-06-11T00:00:00Z"}}')
        assert httpx.get(url).json()["job"]["switch_at"] == "2026-06-11T00:00:00Z"
        assert httpx.get(f"http://127.0.0.1:{server.port}/other").status_code == 404
    finally:
        server.close()


def test_sweep_temps_spares_locked_and_young_temps(tmp_path: Path) -> None:
    import fcntl
    import time

    from edgeship.store.fsutil import sweep_temps

    old, young, locked, other = (tmp_path / f".journal.json.{n}.tmp" for n in ("a", "b", "c", "d"))
    for t in (old, young, locked):
        t.write_bytes(b"{")
    other = tmp_path / ".runtime.token.d.tmp"  # not the name asked for
    other.write_bytes(b"x")
    for t in (old, locked, other):
        os.utime(t, (time.time() - 60, time.time() - 60))
    with open(locked, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_SH)  # a writer in another process would hold it
        assert sweep_temps(tmp_path, "journal.json") == [old]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (young, locked, other))
