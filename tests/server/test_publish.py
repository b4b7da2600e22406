"""Publishing: release push --server (resumable uploads, operator-signed targets), then verify
as a device would, against the server URL."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from edgeship.loopback import free_port
from edgeship.store.digest import Digest
from edgeship.workspace import Workspace
from tests.server.conftest import Fleet, cli, cut_then_resume_upload, make_workspace


def _repo_url(fleet: Fleet, who: str, secret: str) -> str:
    return fleet.url.replace("://", f"://{who}:{secret}@") + "/repo"


def test_push_to_server_then_verify_against_it(fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = Workspace.open(fleet.workspace)
    version = f"1.1.{len(ws.releases('app'))}"
    new = tmp_path / "weights-v2.bin"
    new.write_bytes(os.urandom(1 << 20))
    config = tmp_path / "config.json"
    config.write_text('{"threshold": 0.5}')  # unchanged since 1.0.0: already on the server
    capsys.readouterr()
    code = cli("release", "push", "app", "-v", version, "-c", f"config={config}", "-c", f"weights:file={new}",
               "--server", fleet.url, "--token", fleet.admin_token, "-w", fleet.workspace, "--json")
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    uploaded = out["server"]["uploaded"]
    assert f"blobs/sha256/{hashlib.sha256(new.read_bytes()).hexdigest()}" in uploaded
    assert f"releases/app/{version}.json" in uploaded
    assert not any(hashlib.sha256(config.read_bytes()).hexdigest() in p for p in uploaded)
    assert f"app@{version}" in fleet.admin.get("/v1/admin/repository").json()["releases"]

    d = fleet.enroll()
    root = fleet.workspace / "repository" / "metadata" / "1.root.json"
    keep = tmp_path / "verified"
    args = ["verify", f"app@{version}", "--repo", _repo_url(fleet, d.id, d.secret), "--root", root, "--metadata-dir", tmp_path / "trust"]
    assert cli(*args, "--keep", keep) == 0
    assert (keep / "components" / "weights-v2.bin").read_bytes() == new.read_bytes()
    # A second sync has nothing to do.
    assert cli("server", "sync", "--server", fleet.url, "--token", fleet.admin_token, "-w", fleet.workspace) == 0
    # A wrong device secret gets nothing.
    assert cli("verify", f"app@{version}", "--repo", _repo_url(fleet, d.id, "nope"), "--root", root, "--metadata-dir", tmp_path / "t2") != 0


def test_push_uploads_to_the_workspace_server_or_says_it_did_not(new_fleet: Callable[..., Fleet], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    f = new_fleet()
    config = tmp_path / "config.json"
    config.write_text('{"threshold": 0.7}')

    def push(version: str, *extra: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = cli("release", "push", "app", "-v", version, "-c", f"config={config}", "-w", f.workspace, *extra)
        out = capsys.readouterr()
        return code, out.out, out.err

    def on_server() -> list[str]:
        return f.admin.get("/v1/admin/repository").json()["releases"]

    # No --server: edgeship.toml names the server, so devices can be assigned the release at once.
    code, out, _ = push("2.0.0")
    assert code == 0 and f"uploaded to {f.url}" in out
    d = f.enroll()
    assert cli("assign", "app@2.0.0", "--device", d.id, "-w", f.workspace) == 0

    code, out, _ = push("2.1.0", "--no-upload", "--json")
    assert code == 0 and json.loads(out)["server"] is None and json.loads(out)["not_uploaded"] == "--no-upload"
    assert "app@2.1.0" not in on_server()
    code, out, _ = push("2.1.1", "--no-upload", "--server", f.url)  # --no-upload wins, e.g. over $EDGESHIP_SERVER
    said = " ".join(out.split())
    assert code == 0 and "not uploaded (--no-upload)" in said and "server init" not in said  # asked: no hint to name a server
    assert "app@2.1.1" not in on_server()

    # The server does not answer: the push fails, says the release is signed but not uploaded, and sync finishes it.
    ws = Workspace.open(f.workspace)
    ws.config.server_url = f"http://127.0.0.1:{free_port()}"
    ws.save_config()
    code, _, err = push("2.2.0")
    assert code == 1 and "app@2.2.0 is signed in the workspace, but the upload to" in err and "server sync" in err
    assert "app@2.2.0" not in on_server()
    assert cli("server", "sync", "--server", f.url, "-w", f.workspace) == 0
    assert {"app@2.1.0", "app@2.1.1", "app@2.2.0"} <= set(on_server())

    ws.config.server_url = ""
    ws.save_config()
    code, out, _ = push("2.3.0")
    said = " ".join(out.split())
    assert code == 0 and "not uploaded (edgeship.toml names no server)" in said and "once `edgeship server init`" in said


def test_upload_resumes_after_a_cut_connection(fleet: Fleet) -> None:
    data = os.urandom(2 << 20)
    digest = Digest(hashlib.sha256(data).hexdigest())
    sent = cut_then_resume_upload(fleet, data, len(data) // 2)
    assert sent[0] == len(data)  # only the second half was sent, in one chunk
    stored = fleet.server.data_dir / "repository" / "blobs" / "sha256" / digest.hex
    assert stored.read_bytes() == data


def test_upload_with_wrong_bytes_is_discarded(fleet: Fleet) -> None:
    claimed = hashlib.sha256(b"the real thing").hexdigest()
    r = fleet.admin.patch(f"/v1/admin/uploads/sha256/{claimed}", content=b"something else", headers={"upload-offset": "0", "upload-length": "14"})
    assert r.status_code == 422 and "do not match" in r.json()["error"]["message"]
    head = fleet.admin.head(f"/v1/admin/uploads/sha256/{claimed}")
    assert head.headers["upload-offset"] == "0" and head.headers["upload-complete"] == "0"
    assert fleet.admin.put("/v1/admin/uploads/sha256/not-hex", content=b"x").status_code == 422
    r = fleet.admin.patch(f"/v1/admin/uploads/sha256/{claimed}", content=b"x", headers={"upload-offset": "5", "upload-length": "14"})
    assert r.status_code == 416
    r = fleet.admin.patch(f"/v1/admin/uploads/sha256/{claimed}", content=b"x", headers={"upload-offset": "0"})
    assert r.status_code == 422 and "Upload-Length" in r.json()["error"]["message"]


def test_server_refuses_targets_it_cannot_trust(fleet: Fleet, tmp_path: Path) -> None:
    before = fleet.admin.get("/v1/admin/repository").json()
    # A stranger's workspace: its own root and targets keys.
    stranger, _ = make_workspace(tmp_path)
    foreign = Workspace.open(stranger).repository()
    targets = json.loads((foreign.metadata_dir / f"{foreign.targets().signed.version}.targets.json").read_bytes())
    targets["signed"]["version"] = before["targets_version"] + 5
    for path in targets["signed"]["targets"]:  # make every file present so only the signature is wrong
        sha = targets["signed"]["targets"][path]["hashes"]["sha256"]
        src = foreign.path / path
        fleet.admin.put(f"/v1/admin/uploads/sha256/{sha}", content=src.read_bytes())
    r = fleet.admin.post("/v1/admin/metadata", json={"targets": targets})
    assert r.status_code == 422 and r.json()["error"]["code"] == "untrusted"

    ours = Workspace.open(fleet.workspace).repository()
    current = json.loads((ours.metadata_dir / f"{ours.targets().signed.version}.targets.json").read_bytes())
    r = fleet.admin.post("/v1/admin/metadata", json={"targets": current})
    assert r.status_code == 422 and "not newer" in r.json()["error"]["message"]

    tampered = json.loads(json.dumps(current))
    tampered["signed"]["version"] += 1
    r = fleet.admin.post("/v1/admin/metadata", json={"targets": tampered})
    assert r.status_code == 422 and r.json()["error"]["code"] == "untrusted"

    missing = json.loads(json.dumps(current))
    missing["signed"]["targets"]["blobs/sha256/" + "e" * 64] = {"length": 1, "hashes": {"sha256": "e" * 64}}
    r = fleet.admin.post("/v1/admin/metadata", json={"targets": missing})
    assert r.status_code == 422 and "not uploaded" in r.json()["error"]["message"]

    assert fleet.admin.post("/v1/admin/metadata", json={"targets": {"signed": 1}}).status_code == 422
    assert fleet.admin.get("/v1/admin/repository").json() == before
    with httpx.Client() as c:
        assert c.post(f"{fleet.url}/v1/admin/metadata", json={"targets": current}).status_code == 401


def test_targets_that_do_not_verify_leave_the_published_release_intact(fleet: Fleet, tmp_path: Path) -> None:
    """Forged targets naming other bytes for a published manifest are refused before anything
    is written: the genuine manifest is still served and the release still verifies."""
    path = "releases/app/1.0.0.json"
    d = fleet.enroll()
    with httpx.Client(auth=(d.id, d.secret), verify=False) as device:
        served = device.get(f"{fleet.url}/repo/{path}").content
        forged = served.replace(b'"app"', b'"forged"')
        sha = hashlib.sha256(forged).hexdigest()
        assert fleet.admin.put(f"/v1/admin/uploads/sha256/{sha}", content=forged).status_code == 200
        ours = Workspace.open(fleet.workspace).repository()
        targets = json.loads((ours.metadata_dir / f"{ours.targets().signed.version}.targets.json").read_bytes())
        targets["signed"]["version"] = fleet.admin.get("/v1/admin/repository").json()["targets_version"] + 1
        targets["signed"]["targets"][path] |= {"length": len(forged), "hashes": {"sha256": sha}}
        r = fleet.admin.post("/v1/admin/metadata", json={"targets": targets})
        assert r.status_code == 422 and r.json()["error"]["code"] == "untrusted"
        assert device.get(f"{fleet.url}/repo/{path}").content == served
    root = fleet.workspace / "repository" / "metadata" / "1.root.json"
    assert cli("verify", "app@1.0.0", "--repo", _repo_url(fleet, d.id, d.secret), "--root", root, "--metadata-dir", tmp_path / "t") == 0


def test_targets_key_rotation_reaches_the_server(fleet: Fleet, tmp_path: Path) -> None:
    """A new root (signed by old and new root keys) travels with the push; devices that trust
    only root v1 follow the chain and accept targets signed by the new key."""
    assert cli("keys", "rotate", "--role", "targets", "-w", fleet.workspace) == 0
    ws = Workspace.open(fleet.workspace)
    root_version = ws.repository().root().signed.version
    weights = tmp_path / "w.bin"
    weights.write_bytes(os.urandom(4096))
    version = f"1.2.{len(ws.releases('app'))}"
    assert cli("release", "push", "app", "-v", version, "-c", f"weights:file={weights}", "--server", fleet.url,
               "--token", fleet.admin_token, "-w", fleet.workspace) == 0
    assert fleet.admin.get("/v1/admin/repository").json()["root_version"] == root_version
    d = fleet.enroll()
    root = fleet.workspace / "repository" / "metadata" / "1.root.json"
    assert cli("verify", f"app@{version}", "--repo", _repo_url(fleet, d.id, d.secret), "--root", root, "--metadata-dir", tmp_path / "t") == 0


def test_push_uploads_signed_deltas_and_the_server_serves_them(fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = Workspace.open(fleet.workspace)
    base = os.urandom(1 << 20)
    tuned = bytearray(base)
    tuned[4096:8192] = os.urandom(4096)  # a small change in a large file
    versions = [f"2.0.{len(ws.releases('delta-app')) + i}" for i in range(2)]
    for version, data in zip(versions, (base, bytes(tuned)), strict=True):
        f = tmp_path / version / "weights.bin"
        f.parent.mkdir()
        f.write_bytes(data)
        capsys.readouterr()
        code = cli("release", "push", "delta-app", "-v", version, "-c", f"weights:file={f}",
                   "--server", fleet.url, "--token", fleet.admin_token, "-w", fleet.workspace, "--json")
        assert code == 0
    out = json.loads(capsys.readouterr().out)
    [delta] = out["deltas"]
    assert delta["kept"] and delta["size"] < (1 << 20) // 10
    [path] = [p for p in out["server"]["uploaded"] if p.startswith("deltas/")]
    d = fleet.enroll()
    served = httpx.get(f"{fleet.url}/repo/{path}", auth=(d.id, d.secret), verify=False)
    assert served.status_code == 200
    assert served.content == (fleet.workspace / "repository" / path).read_bytes()
