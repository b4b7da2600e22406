"""A real Mosquitto on free loopback ports, a test PKI for it, and a subscriber that records what arrives."""

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
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgeship.loopback import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
# CI installs the broker, so there a missing one fails loudly instead of skipping quietly.
needs_mosquitto = pytest.mark.skipif(not Path(MOSQUITTO).exists() and not os.environ.get("CI"),
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
    """A broker that persists sessions across restarts.

    By default it listens anonymously on ``port`` (plain) and ``tls_port`` (a test PKI);
    ``listeners`` replaces that part of the config (e.g. what `edgeship mqtt config` wrote),
    ``port`` then being the one it listens on. ``settings`` adds lines to the general part.
    """

    def __init__(self, d: Path, *, listeners: str | None = None, port: int | None = None, settings: str = "") -> None:
        self.dir, self.port = d, port or free_port()
        d.mkdir(parents=True)
        (d / "data").mkdir()
        if listeners is None:
            self.tls_port = free_port()
            self.pki = write_pki(d, "good")
            listeners = f"""\
allow_anonymous true
listener {self.port} 127.0.0.1
listener {self.tls_port} 127.0.0.1
cafile {self.pki['ca']}
certfile {self.pki['cert']}
keyfile {self.pki['key']}
"""
        self.conf = d / "mosquitto.conf"
        self.conf.write_text(f"""\
user {getpass.getuser()}
persistence true
persistence_location {d / 'data'}/
autosave_interval 1
log_dest file {d / 'mosquitto.log'}
log_type all
{settings}
{listeners}""")
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
        raise RuntimeError(f"mosquitto did not start: {self.log()}")

    def log(self) -> str:
        path = self.dir / "mosquitto.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # SIGTERM: mosquitto writes its persistence file on the way out
            self.proc.wait(timeout=10)
            self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


class Subscriber:
    """A durable QoS 1 subscription (clean_session=False): the broker keeps what arrives while we are away."""

    def __init__(self, port: int, topic: str, *, client_id: str = "dashboard", username: str | None = None,
                 password: str | None = None, ca: Path | None = None) -> None:
        self.messages: list[dict] = []
        self.topics: list[str] = []
        self.distinct_topics: set[str] = set()
        self.connect_codes: list[str] = []
        self._arrived = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        if username:
            self.client.username_pw_set(username, password)
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca))
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)
        self.client.subscribed = threading.Event()  # type: ignore[attr-defined]
        self.client.on_subscribe = lambda c, u, mid, reasons, p: c.subscribed.set()
        self._topic = topic
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object) -> None:
        self.connect_codes.append(str(reason))
        if not reason.is_failure:  # type: ignore[attr-defined]
            client.subscribe(self._topic, qos=1)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._arrived:
            self.messages.append(json.loads(message.payload))
            self.topics.append(message.topic)
            self.distinct_topics.add(message.topic)
            self._arrived.notify_all()

    def ready(self, timeout: float = 10.0) -> bool:
        """Subscribed (the broker acknowledged the SUBSCRIBE)."""
        return bool(self.client.subscribed.wait(timeout))  # type: ignore[attr-defined]

    def wait_for(self, count: int, timeout: float = 20.0) -> list[dict]:
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.distinct()) >= count, timeout)
            return self.distinct()

    def wait_for_topics(self, count: int, timeout: float = 20.0) -> int:
        """How many distinct topics a message arrived on, once ``count`` did (cheap for many messages)."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.distinct_topics) >= count, timeout)
            return len(self.distinct_topics)

    def distinct(self) -> list[dict]:
        # QoS 1 is at-least-once: a resent message may arrive twice.
        return list({json.dumps(m, sort_keys=True): m for m in self.messages}.values())

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
