"""Results over MQTT against a real Mosquitto: delivery, a broker restart (QoS 1), TLS, the bounded buffer."""

from __future__ import annotations

import datetime as dt
import getpass
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgeship.loopback import free_port
from edgeship.runtime import BackgroundServer
from edgeship.runtime.mqtt import MqttPublisher, topic_for

from .conftest import Models, config_for, standard_release
from .harness import Device

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
# CI installs the broker, so there a missing one fails loudly instead of skipping quietly.
pytestmark = pytest.mark.skipif(not Path(MOSQUITTO).exists() and not os.environ.get("CI"),
                                reason="needs Debian's mosquitto (apt-get install mosquitto)")


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None, signer: ec.EllipticCurvePrivateKey,
          ca: bool) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(signer, hashes.SHA256())


def write_pki(d: Path, label: str) -> dict[str, Path]:
    """A CA and a broker certificate for 127.0.0.1 signed by it (PEM files)."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert(f"{label} test CA", ca_key, None, ca_key, True)
    server = _cert("127.0.0.1", key, ca.subject, ca_key, False)
    paths = {"ca": d / f"{label}-ca.pem", "cert": d / f"{label}-server.pem", "key": d / f"{label}-server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


class Mosquitto:
    """A broker on free loopback ports (plain and TLS) that persists sessions across restarts."""

    def __init__(self, d: Path) -> None:
        self.dir, self.port, self.tls_port = d, free_port(), free_port()
        d.mkdir(parents=True)
        self.pki = write_pki(d, "good")
        (d / "data").mkdir()
        self.conf = d / "mosquitto.conf"
        self.conf.write_text(f"""\
user {getpass.getuser()}
persistence true
persistence_location {d / 'data'}/
autosave_interval 1
allow_anonymous true
log_dest file {d / 'mosquitto.log'}
listener {self.port} 127.0.0.1
listener {self.tls_port} 127.0.0.1
cafile {self.pki['ca']}
certfile {self.pki['cert']}
keyfile {self.pki['key']}
""")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start: {(self.dir / 'mosquitto.log').read_text()}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # SIGTERM: mosquitto writes its persistence file on the way out
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


class Subscriber:
    """A durable QoS 1 subscription (clean_session=False): the broker keeps what arrives while we are away."""

    def __init__(self, port: int, topic: str, *, client_id: str = "dashboard") -> None:
        self.messages: list[dict] = []
        self.topics: list[str] = []
        self._arrived = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._arrived:
            self.messages.append(json.loads(message.payload))
            self.topics.append(message.topic)
            self._arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 20.0) -> list[dict]:
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.distinct()) >= count, timeout)
            return self.distinct()

    def distinct(self) -> list[dict]:
        # QoS 1 is at-least-once: a resent message may arrive twice.
        return list({json.dumps(m, sort_keys=True): m for m in self.messages}.values())

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def completion(url: str, prompt: str) -> str:
    reply = httpx.post(f"{url}/v1/completions", json={"model": "llm", "prompt": prompt, "max_tokens": 3, "temperature": 0})
    assert reply.status_code == 200
    return reply.json()["choices"][0]["text"]


@pytest.mark.slow
def test_results_arrive_and_survive_a_broker_restart(broker: Mosquitto, device: Device, models: Models) -> None:
    release_id = standard_release(device, models)
    sub = Subscriber(broker.port, "edgeship/+/+/results")
    config = config_for(device, mqtt_url=f"mqtt://127.0.0.1:{broker.port}", device_id="dev-1")
    try:
        with BackgroundServer(config) as server:
            texts = [completion(server.url, p) for p in ("one", "two")]
            httpx.post(f"{server.url}/v1/predict", json={"inputs": {"image": [[[[0.5] * 32] * 32] * 3]}}).raise_for_status()
            before = sub.wait_for(3)
            assert sorted(m["output"] for m in before if m["endpoint"] == "completions") == sorted(texts)
            predicted = next(m for m in before if m["endpoint"] == "predict")
            assert predicted["output"]["denoised"]["shape"] == [1, 3, 32, 32]  # tensors go as a summary
            assert {m["device_id"] for m in before} == {"dev-1"} and {m["release_id"] for m in before} == {release_id}
            assert set(sub.topics) == {"edgeship/dev-1/llm/results", "edgeship/dev-1/denoiser/results"}

            broker.stop()
            texts += [completion(server.url, p) for p in ("three", "four", "five")]  # the broker is away
            broker.start()
            after = sub.wait_for(6, timeout=30)
            assert sorted(m["output"] for m in after if m["endpoint"] == "completions") == sorted(texts)
    finally:
        sub.close()


def test_tls_with_the_ca_file(broker: Mosquitto, device: Device, models: Models, tmp_path: Path) -> None:
    standard_release(device, models)
    sub = Subscriber(broker.port, "edgeship/tls-dev/#", client_id="tls-dashboard")
    config = config_for(device, mqtt_url=f"mqtts://127.0.0.1:{broker.tls_port}", mqtt_ca=broker.pki["ca"],
                        device_id="tls-dev")
    try:
        with BackgroundServer(config) as server:
            text = completion(server.url, "secure")
            [message] = sub.wait_for(1)
            assert message["output"] == text and message["model"] == "llm"
    finally:
        sub.close()
    # A broker certificate from another CA is refused: nothing is ever sent to it.
    other_ca = write_pki(tmp_path, "other")["ca"]
    stranger = MqttPublisher(f"mqtts://127.0.0.1:{broker.tls_port}", "x", ca=other_ca)
    try:
        time.sleep(1.5)
        assert not stranger.connected
    finally:
        stranger.close()


def test_buffer_is_bounded_while_the_broker_is_away(broker: Mosquitto) -> None:
    sub = Subscriber(broker.port, topic_for("dev-2", "llm"), client_id="late")
    sub.wait_for(0)
    time.sleep(0.3)  # the durable subscription is in place before the broker goes away
    broker.stop()
    dropped: list[int] = []
    publisher = MqttPublisher(f"mqtt://127.0.0.1:{broker.port}", "dev-2", buffer=3, min_backoff_s=1, max_backoff_s=1,
                              on_drop=lambda: dropped.append(1))
    try:
        accepted = [publisher.publish("llm", {"output": i}) for i in range(5)]
        assert accepted == [True, True, True, False, False] and len(dropped) == 2
        broker.start()
        outputs = sorted(m["output"] for m in sub.wait_for(3))
        assert outputs == [0, 1, 2]  # the buffered three, once; the two beyond the bound were dropped
        assert publisher.publish("llm", {"output": 5})
        assert sorted(m["output"] for m in sub.wait_for(4)) == [0, 1, 2, 5]
    finally:
        publisher.close()
        sub.close()


def test_topic_names_cannot_escape_their_level() -> None:
    assert topic_for("dev/1", "m+#") == "edgeship/dev_1/m__/results"
