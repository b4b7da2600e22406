"""Broker accounts kept by the server in a real Mosquitto's dynamic-security plugin: enrolling a
device creates its account and ACL at once, decommissioning removes them at once, with no
files regenerated and no broker reload; and the plugin's commands and config (pure).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edgeship import dynsec
from edgeship.broker import DeviceAccount, mosquitto_hash
from edgeship.cli.main import run
from edgeship.loopback import free_port
from edgeship.mqtt import device_password, device_topic, tag_topic
from edgeship.workspace import Workspace
from tests.agent.harness import Device, Releases, Server
from tests.agent.test_push import wait_until
from tests.helpers.mosquitto import Mosquitto, needs_mosquitto


@dataclass
class Login:
    connected: bool
    granted: list[bool]  # per topic subscribed


def login(port: int, user: str, password: str, *topics: str) -> Login:
    """Connect as ``user`` and subscribe to each topic; which the broker granted."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{user}-{free_port()}")
    client.username_pw_set(user, password)
    done, result = threading.Event(), Login(False, [])

    def connected(c: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
        result.connected = not reason.is_failure
        if result.connected and topics:
            c.subscribe([(t, 1) for t in topics])
        else:
            done.set()

    def subscribed(_c: mqtt.Client, _u: object, _mid: int, reasons: list[mqtt.ReasonCode], _p: object) -> None:
        result.granted = [not r.is_failure for r in reasons]
        done.set()

    client.on_connect, client.on_subscribe = connected, subscribed
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert done.wait(10), f"no answer from the broker for {user}"
    finally:
        client.disconnect()
        client.loop_stop()
    return result


@dataclass
class Broker:
    server: Server
    mosquitto: Mosquitto
    root: Path
    tmp: Path

    def device(self, name: str) -> tuple[Device, str, str]:
        d = Device(self.server, self.tmp / name, self.root, f"site={name}", self.server.enroll_token({"site": name}))
        assert d.run().returncode == 0
        identity = json.loads((d.data / "identity.json").read_text())
        return d, identity["device_id"], device_password(identity["secret"])


@pytest.fixture
def broker(tmp_path: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Broker]:
    monkeypatch.delenv("EDGESHIP_KEY_PASSPHRASE", raising=False)
    ws = Workspace.init(tmp_path / "ws", passphrase=None)
    releases = Releases(ws, tiny_gguf, tmp_path / "src")
    releases.publish("1.0.0")
    server = Server.create(ws, tmp_path / "server")
    server.start()
    b = Broker(server, None, releases.root(), tmp_path)  # type: ignore[arg-type]
    early = b.device("early")  # enrolled before the broker exists: its account comes from the exported config
    port, out = free_port(), tmp_path / "broker-files"
    assert run(["mqtt", "config", "--dynsec", "--server", server.url, "--token", server.admin_token, "--out", str(out),
                "--port", str(port), "--bind", "127.0.0.1"]) == 0
    b.mosquitto = Mosquitto(tmp_path / "broker", listeners=(out / "mosquitto.conf").read_text(), port=port)
    b.mosquitto.start()
    server.stop()
    server.settings = server.settings.model_copy(update={
        "mqtt": f"mqtt://127.0.0.1:{port}", "mqtt_username": "edgeship-server", "mqtt_dynsec": True,
        "mqtt_password": (out / "server-password").read_text().strip(),
    })
    server.start()
    b.early = early  # type: ignore[attr-defined]
    try:
        yield b
    finally:
        server.stop()
        b.mosquitto.stop()


@needs_mosquitto
def test_enrollment_and_decommissioning_change_broker_accounts_at_once(broker: Broker) -> None:
    port = broker.mosquitto.port
    _, early_id, early_pw = broker.early  # type: ignore[attr-defined]
    assert login(port, early_id, early_pw, device_topic(early_id), tag_topic("site", "early")) == Login(True, [True, True])

    _, new_id, new_pw = broker.device("late")  # enrolled while the broker runs: nothing regenerated, no reload
    wait_until(lambda: login(port, new_id, new_pw).connected, 10, "the new device's account never appeared")
    # Its own topics only: not another device's, nor another tag's.
    assert login(port, new_id, new_pw, device_topic(new_id), tag_topic("site", "late"), device_topic(early_id),
                 tag_topic("site", "early")) == Login(True, [True, True, False, False])
    assert not login(port, new_id, "not-its-password").connected

    broker.server.admin("DELETE", f"/v1/admin/devices/{new_id}")
    wait_until(lambda: not login(port, new_id, new_pw).connected, 10, "the decommissioned device can still log in")
    assert login(port, early_id, early_pw).connected  # the others keep theirs
    conf = (broker.tmp / "broker-files" / "mosquitto.conf").read_text()
    assert "plugin " in conf and "password_file" not in conf and not (broker.tmp / "broker-files" / "acl").exists()


def test_plugin_commands_give_a_device_its_own_topics() -> None:
    create_role, create_client = dynsec.add_device("dev_x", "pw", {"site": "lab"})
    assert create_client == {"command": "createClient", "username": "dev_x", "password": "pw",
                             "roles": [{"rolename": "edgeship-device-dev_x"}]}
    assert {(a["acltype"], a["topic"]) for a in create_role["acls"]} == {
        ("subscribeLiteral", device_topic("dev_x")), ("subscribeLiteral", tag_topic("site", "lab")),
        ("publishClientSend", "edgeship/dev_x/+/results")}
    assert [c["command"] for c in dynsec.remove_device("dev_x")] == ["deleteClient", "deleteRole"]
    assert json.loads(dynsec.payload(dynsec.remove_device("dev_x")))["commands"][0]["username"] == "dev_x"


def test_initial_config_carries_the_stored_hashes() -> None:
    h = mosquitto_hash("secret", salt=b"0123456789ab")
    config = dynsec.initial_config("srv", mosquitto_hash("s"), [DeviceAccount("dev_a", h, {"t": "1"})])
    dev = next(c for c in config["clients"] if c["username"] == "dev_a")
    _, _, iterations, salt, digest = h.split("$")
    assert (dev["iterations"], dev["salt"], dev["password"]) == (int(iterations), salt, digest)
    server_role = next(r for r in config["roles"] if r["rolename"] == dynsec.SERVER_ROLE)
    assert {"acltype": "publishClientSend", "topic": dynsec.CONTROL_TOPIC, "priority": 0, "allow": True} in server_role["acls"]
    assert config["defaultACLAccess"]["subscribe"] is False


def test_a_plugin_path_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    from edgeship.cli.mqtt import plugin_path
    from edgeship.errors import UsageError

    with pytest.raises(UsageError, match="no dynamic-security plugin at"):
        plugin_path(tmp_path / "mosquitto_dynamic_security.so")
