"""The operator CLI against a real server: tokens, devices, assignments, events, admin tokens."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeship.broker import mosquitto_hash
from edgeship.cli.main import run
from tests.server.conftest import Fleet


@pytest.fixture
def cli_json(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, fleet: Fleet) -> Callable[..., object]:
    """Run `edgeship … --json` against the fleet's server (URL and token from the workspace)."""
    monkeypatch.setenv("EDGESHIP_WORKSPACE", str(fleet.workspace))
    monkeypatch.setenv("EDGESHIP_SERVER", fleet.url)

    def invoke(*args: str | Path, json_out: bool = True) -> object:
        capsys.readouterr()
        code = run([str(a) for a in args] + (["--json"] if json_out else []))
        out = capsys.readouterr()
        assert code == 0, out.err
        return json.loads(out.out) if json_out else out.out

    return invoke


def test_token_device_assign_and_events_commands(fleet: Fleet, cli_json: Callable[..., object]) -> None:
    site = f"lab-{uuid.uuid4().hex[:6]}"
    made = cli_json("device", "token", "create", "--tags", f"site={site},ring=pilot", "--uses", "2", "--expires", "1h")
    assert made["tags"] == {"site": site, "ring": "pilot"} and made["uses_allowed"] == 2 and made["expires_at"]
    with fleet.anon() as c:
        enrolled = c.post("/v1/devices/enroll", json={"token": made["token"], "facts": {"hostname": "bench-1"}}).json()
        device_id = enrolled["device_id"]
        auth = {"authorization": f"Bearer {device_id}.{enrolled['secret']}"}
        event = {"id": uuid.uuid4().hex, "time": "2026-02-02T10:00:00Z", "type": "feedback", "data": {"stars": 5}}
        assert c.post(f"/v1/devices/{device_id}/events", json={"events": [event]}, headers=auth).status_code == 200

    listed = cli_json("device", "list", "--tag", f"site={site}")
    assert [d["id"] for d in listed] == [device_id]
    assert cli_json("assign", "app@1.0.0", "--tag", f"site={site}")["release"] == "app@1.0.0"
    shown = cli_json("device", "show", device_id)
    assert shown["facts"]["hostname"] == "bench-1" and shown["assignment"]["version"] == "1.0.0"

    lines = [json.loads(x) for x in cli_json("events", "--device", device_id, "--json", json_out=False).splitlines()]
    assert [(e["type"], e["data"]) for e in lines] == [("feedback", {"stars": 5})]
    assert device_id in cli_json("events", "--device", device_id, json_out=False)

    revoked = cli_json("device", "token", "revoke", made["id"])
    assert revoked["revoked_at"] and revoked["uses"] == 1
    assert cli_json("device", "decommission", device_id)["decommissioned_at"]
    assert cli_json("device", "list", "--tag", f"site={site}") == []

    token = cli_json("admin", "token", "create", "--name", "ci")
    assert token["token"].startswith("adm_") and token["name"] == "ci"


def test_cli_errors_are_one_line_with_a_hint(fleet: Fleet, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGESHIP_WORKSPACE", raising=False)
    monkeypatch.chdir(fleet.workspace.parent)
    capsys.readouterr()
    assert run(["device", "list", "--server", fleet.url, "--token", "adm_0000000000000000.wrong"]) == 1
    err = capsys.readouterr().err
    assert "admin token not accepted" in err and "Traceback" not in err
    assert run(["device", "show", "dev_nosuchdevice0000", "--server", fleet.url, "--token", fleet.admin_token]) == 3
    assert run(["assign", "app@1.0.0", "--server", fleet.url, "--token", fleet.admin_token]) == 2
    assert run(["device", "list", "--server", "http://127.0.0.1:9", "--token", fleet.admin_token]) == 1
    assert "cannot reach" in capsys.readouterr().err


def test_mqtt_config_matches_its_advice_to_the_listener_it_writes(
        fleet: Fleet, cli_json: Callable[..., object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "plain"
    advice = " ".join(str(cli_json("mqtt", "config", "--out", plain, json_out=False)).split())
    assert "listener 1883 " in (plain / "mosquitto.conf").read_text() and "certfile" not in (plain / "mosquitto.conf").read_text()
    assert "--mqtt mqtt://BROKER:1883" in advice and f"include_dir {plain}" in advice  # mosquitto has no 'include'

    monkeypatch.chdir(tmp_path)
    for name in ("c.pem", "k.pem", "ca.pem"):
        (tmp_path / name).write_text("")
    tls = tmp_path / "tls"
    advice = " ".join(str(cli_json("mqtt", "config", "--out", tls, "--tls-cert", "c.pem", "--tls-key", "k.pem",
                                   "--tls-ca", "ca.pem", json_out=False)).split())
    conf = (tls / "mosquitto.conf").read_text().splitlines()
    assert "listener 8883 0.0.0.0" in conf and "--mqtt mqtts://BROKER:8883" in advice
    assert {f"cafile {tmp_path / 'ca.pem'}", f"certfile {tmp_path / 'c.pem'}", f"keyfile {tmp_path / 'k.pem'}"} <= set(conf)

    assert run(["mqtt", "config", "--out", str(tmp_path / "bad"), "--tls-ca", "ca.pem"]) == 2


def test_mqtt_config_keeps_a_given_server_password(
        fleet: Fleet, cli_json: Callable[..., object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "broker"
    monkeypatch.setenv("EDGESHIP_MQTT_PASSWORD", "given-pw")
    cli_json("mqtt", "config", "--out", out)
    kept = out / "server-password"
    assert kept.read_text().strip() == "given-pw" and kept.stat().st_mode & 0o777 == 0o600
    monkeypatch.delenv("EDGESHIP_MQTT_PASSWORD")
    cli_json("mqtt", "config", "--out", out)  # a later run without it: the same password, not a new one
    assert kept.read_text().strip() == "given-pw"
    server_line = (out / "passwords").read_text().splitlines()[0]
    _, _, iterations, salt, _ = server_line.split(":", 1)[1].split("$")
    assert server_line.split(":", 1)[1] == mosquitto_hash("given-pw", iterations=int(iterations), salt=base64.b64decode(salt))
