"""HTTPS with a private CA: `edgeship certs init`, a TLS server, clients that pin the CA."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import httpx
import pytest

from edgeship.cli.main import run
from edgeship.workspace import Workspace
from tests.helpers.server import running_server
from tests.server.conftest import cli, make_workspace


def test_https_with_pinned_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws, blob = make_workspace(tmp_path)
    data = tmp_path / "data"
    assert cli("server", "init", "--data-dir", data, "-w", ws) == 0
    assert cli("certs", "init", "--data-dir", data, "-w", ws) == 0
    config = Workspace.open(ws).config
    assert config.server_ca == "server-ca.pem" and config.server_url.startswith("https://")
    assert (data / "tls" / "ca-key.pem").stat().st_mode & 0o077 == 0
    ca = data / "tls" / "ca.pem"
    extra = ("--tls-cert", str(data / "tls" / "server.pem"), "--tls-key", str(data / "tls" / "server-key.pem"))
    with running_server(data, extra=extra, ca=ca) as server:
        with pytest.raises(httpx.ConnectError):  # not trusted without the pinned CA
            httpx.get(f"{server.url}/healthz")
        admin = {"authorization": f"Bearer {config.server_admin_token}"}
        token = httpx.post(f"{server.url}/v1/admin/enroll-tokens", json={}, headers=admin, verify=ssl.create_default_context(cafile=ca)).json()["token"]
        dev = httpx.post(f"{server.url}/v1/devices/enroll", json={"token": token, "facts": {}}, verify=ssl.create_default_context(cafile=ca)).json()

        repo = server.url.replace("://", f"://{dev['device_id']}:{dev['secret']}@") + "/repo"
        root = ws / "repository" / "metadata" / "1.root.json"
        common = ["verify", "app@1.0.0", "--repo", repo, "--root", str(root)]
        assert run([*common, "--metadata-dir", str(tmp_path / "t1"), "--ca", str(ca), "--keep", str(tmp_path / "k")]) == 0
        assert (tmp_path / "k" / "components" / "weights.bin").read_bytes() == blob
        assert run([*common, "--metadata-dir", str(tmp_path / "t2")]) != 0  # system CAs do not know ours

        # The operator CLI finds URL, token and CA in the workspace.
        capsys.readouterr()
        assert run(["device", "list", "-w", str(ws), "--server", server.url, "--json"]) == 0
        assert [d["id"] for d in json.loads(capsys.readouterr().out)] == [dev["device_id"]]
