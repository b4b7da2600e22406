"""Settings, independence of apps in one process, metrics and JSON logs."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edgeship.errors import ConflictError, UsageError
from edgeship.server.app import create_app
from edgeship.server.settings import ServerSettings
from tests.server.conftest import Fleet, cli, make_workspace


def test_settings_come_from_defaults_env_then_flags(tmp_path: Path) -> None:
    env = {"EDGESHIP_PORT": "9001", "EDGESHIP_DATABASE_URL": "postgresql+psycopg://u:p@h/db", "EDGESHIP_ACCESS_LOG": "false"}
    s = ServerSettings.load({"port": 9002, "data_dir": tmp_path}, environ=env)
    assert (s.port, s.database_url, s.access_log, s.data_dir) == (9002, "postgresql+psycopg://u:p@h/db", False, tmp_path)
    assert ServerSettings.load(environ=s.to_env()) == s
    assert ServerSettings.load({"data_dir": tmp_path}, environ={}).effective_database_url == f"sqlite:///{tmp_path / 'edgeship.db'}"
    with pytest.raises(UsageError, match="port"):
        ServerSettings.load(environ={"EDGESHIP_PORT": "eighty"})
    with pytest.raises(UsageError, match="go together"):
        ServerSettings.load({"tls_cert": tmp_path / "c.pem"}, environ={})


def test_two_servers_in_one_process_share_nothing(tmp_path: Path) -> None:
    apps = []
    for name in ("a", "b"):
        ws, _ = make_workspace(tmp_path / name)
        assert cli("server", "init", "--data-dir", tmp_path / name / "data", "-w", ws) == 0
        from edgeship.workspace import Workspace

        token = Workspace.open(ws).config.server_admin_token
        apps.append((create_app(ServerSettings(data_dir=tmp_path / name / "data", access_log=False)), token))
    (app_a, token_a), (app_b, token_b) = apps
    with TestClient(app_a) as a, TestClient(app_b) as b:
        made = a.post("/v1/admin/enroll-tokens", json={}, headers={"authorization": f"Bearer {token_a}"})
        assert made.status_code == 201
        assert b.get("/v1/admin/devices", headers={"authorization": f"Bearer {token_a}"}).status_code == 401
        assert a.post("/v1/devices/enroll", json={"token": made.json()["token"], "facts": {}}).status_code == 201
        metrics_a, metrics_b = a.get("/metrics").text, b.get("/metrics").text
    assert 'edgeship_devices_by_state{state="idle"} 1.0' in metrics_a
    assert "edgeship_devices_by_state{" not in metrics_b
    assert 'route="/v1/devices/enroll"' in metrics_a and 'route="/v1/devices/enroll"' not in metrics_b


def test_metrics_and_json_access_log(fleet: Fleet) -> None:
    d = fleet.enroll()
    with fleet.anon() as c:
        c.post(f"/v1/devices/{d.id}/checkin", json={"state": "trial", "current": {"name": "app", "version": "1.0.0"}}, headers=d.auth)
        c.get(f"/repo/blobs/sha256/{fleet.blob_hex}", headers={**d.auth, "range": "bytes=0-99"})
        rid = uuid.uuid4().hex
        c.get("/healthz", headers={"x-request-id": rid})
        text = c.get("/metrics").text
    checkins = [line for line in text.splitlines() if line.startswith("edgeship_checkins_total")]
    assert checkins and float(checkins[0].split()[-1]) >= 1
    assert 'edgeship_devices_by_release{release="app@1.0.0"}' in text
    assert 'edgeship_devices_by_state{state="trial"}' in text
    served = [line for line in text.splitlines() if line.startswith('edgeship_repo_bytes_served_total{kind="blobs"}')]
    assert served and float(served[0].split()[-1]) >= 100
    logged = [json.loads(line) for line in fleet.server.logs().splitlines() if rid in line]
    assert logged and logged[0]["path"] == "/healthz" and logged[0]["status"] == 200 and logged[0]["request_id"] == rid


def test_not_ready_without_a_repository(tmp_path: Path) -> None:
    app = create_app(ServerSettings(data_dir=tmp_path / "empty", access_log=False))
    with TestClient(app) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and "server init" in r.json()["error"]["message"]
        assert c.get("/healthz").status_code == 200


def test_server_init_takes_online_keys_from_an_encrypted_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from edgeship.server.bootstrap import init_data_dir
    from edgeship.server.context import ServerContext
    from edgeship.workspace import Workspace

    monkeypatch.setenv("EDGESHIP_KEY_PASSPHRASE", "correct horse")
    ws = Workspace.init(tmp_path / "ws", b"correct horse")
    assert b"ENCRYPTED" in (tmp_path / "ws" / "keys" / "timestamp.pem").read_bytes()
    settings = ServerSettings(data_dir=tmp_path / "data")
    init_data_dir(settings, ws)
    keys = sorted(p.name for p in (tmp_path / "data" / "keys").iterdir())
    assert keys == ["snapshot.pem", "timestamp.pem"]  # never root or targets
    assert b"ENCRYPTED" not in (tmp_path / "data" / "keys" / "timestamp.pem").read_bytes()
    assert (tmp_path / "data" / "keys" / "timestamp.pem").stat().st_mode & 0o077 == 0
    monkeypatch.delenv("EDGESHIP_KEY_PASSPHRASE")
    ctx = ServerContext.build(settings)
    before = ctx.repo.versions()["timestamp_version"]
    assert ctx.repo.refresh_timestamp_if_due(timedelta(days=2)) is True
    assert ctx.repo.versions()["timestamp_version"] == before + 1
    assert ctx.repo.repo.signature_status("timestamp").startswith("valid")
    ctx.db.dispose()
    monkeypatch.setenv("EDGESHIP_KEY_PASSPHRASE", "correct horse")
    again = init_data_dir(settings, ws)  # a second run (say, after one cut short) finishes the setup
    assert again.id and (tmp_path / "data" / "keys" / "timestamp.pem").is_file()
    with pytest.raises(ConflictError, match="already holds another repository"):
        init_data_dir(settings, Workspace.init(tmp_path / "other", passphrase=None))


def test_request_ids_are_unique_in_a_process_and_across_a_fork() -> None:
    from edgeship.server.middleware import _request_ids

    ids = [_request_ids.next() for _ in range(1000)]
    assert len(set(ids)) == 1000 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first ID goes back to the parent
        os.write(write, _request_ids.next().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    os.close(read)
    # A forked worker draws its own prefix: the same counter value must not repeat an ID.
    assert child[:16] != _request_ids.next()[:16] and child not in ids
