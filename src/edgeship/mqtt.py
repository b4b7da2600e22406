"""MQTT glue shared by the runtime (results out), the server (push notices out) and the agent (notices in).

Topics (one place, so that publishers, subscribers and the broker's ACL file agree):

    edgeship/<device-id>/<model>/results   the runtime's inference results
    edgeship/devices/<device-id>/notify    "check now" for one device (the server publishes)
    edgeship/tags/<key>=<value>/notify     "check now" for every device with that tag

paho-mqtt does the hard parts: its network thread connects, reconnects with exponential
backoff (``reconnect_delay_set``), keeps every QoS 1 message until the broker acknowledges
it and resends the unacknowledged ones after a reconnect. ``max_queued_messages`` bounds
what waits for a broker that is away: a publish beyond it is refused at once, so a long
outage can neither eat memory nor block the caller.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from edgeship.errors import UsageError

# paho numbers QoS 1 messages with 16-bit IDs and refuses a publish whose ID is still queued
# (MQTT_ERR_QUEUE_SIZE, as for a full queue): a larger buffer would drop notices past the
# 65,535th unacknowledged one while claiming room for more.
MAX_BUFFER = 65_535
_LEVEL_UNSAFE = str.maketrans({"/": "_", "+": "_", "#": "_"})
ANY_DEVICE_TOPIC = "edgeship/devices/+/notify"
ANY_TAG_TOPIC = "edgeship/tags/+/notify"


def level(name: str) -> str:
    """``name`` as one topic level: a '/', '+' or '#' inside it would add a level or act as a wildcard."""
    return name.translate(_LEVEL_UNSAFE)


def results_topic(device_id: str, model: str) -> str:
    return f"edgeship/{level(device_id)}/{level(model)}/results"


def device_topic(device_id: str) -> str:
    return f"edgeship/devices/{level(device_id)}/notify"


def tag_topic(key: str, value: str) -> str:
    # Whitespace too: the broker's ACL file is split on it. Two tags that differ only in
    # such characters share a topic, which costs their devices an extra check-in, no more.
    return f"edgeship/tags/{'_'.join(level(f'{key}={value}').split())}/notify"


def device_password(secret: str) -> str:
    """A device's MQTT password, derived from its server secret (docs/server.md, "Push").

    One-way: the broker, which sees this password, learns nothing it could use against the
    HTTP API; the agent derives it itself, so enrollment hands out no second secret.
    """
    return hmac.new(secret.encode(), b"edgeship mqtt password v1", hashlib.sha256).hexdigest()


def without_login(url: str) -> str:
    """``url`` without its ``user:password@``, for messages: a password must not reach a log or a terminal."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    return f"{scheme}{sep}{netloc.rpartition('@')[2]}{slash}{tail}"


@dataclass(frozen=True)
class Broker:
    """Where ``mqtt://[user:pass@]host[:port]`` or ``mqtts://…`` points."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> Broker:
        shown = without_login(url)
        try:
            parts = urlsplit(url)
        except ValueError:  # a broken [IPv6] host
            parts = None
        if parts is None or parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise UsageError(f"MQTT URL {shown!r} not understood", hint="write mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
        try:
            port = parts.port
        except ValueError:  # no number, or above 65535
            port = 0
        if port == 0:
            raise UsageError(f"MQTT URL {shown!r} has no valid port",
                             hint="a port is a number from 1 to 65535, e.g. mqtts://HOST:8883; leave it out for 1883 (mqtt) or 8883 (mqtts)")
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def login(self, username: str | None = None, password: str | None = None) -> tuple[str | None, str | None]:
        """The user and password to connect with: ``username`` with ``password``, else the URL's pair.

        Never one from each: an explicit user with the URL's password would send one user's
        secret in another's name.
        """
        return (username, password) if username else (self.username, self.password)


def start_client(
    broker: Broker,
    client_id: str,
    *,
    ca: Path | None = None,
    username: str | None = None,
    password: str | None = None,
    buffer: int = 1000,
    min_backoff_s: float = 1,
    max_backoff_s: float = 60,
    on_connect: Callable[[Any], None] | None = None,
    on_message: Callable[[str, bytes], None] | None = None,
    on_subscribed: Callable[[int, int], None] | None = None,
) -> Any:
    """A paho client whose own thread connects now and reconnects forever; returns at once.

    ``username`` and ``password`` (a pair) win over those in the URL. ``on_connect(client)`` runs after
    every successful (re)connection, where subscriptions belong: a broker that restarts
    without persistence has forgotten them. ``on_subscribed(granted, asked)`` follows each
    SUBACK. Every callback is set before the client's thread starts.
    """
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    user, pw = broker.login(username, password)
    if user:
        client.username_pw_set(user, pw)
    if broker.tls:
        try:
            client.tls_set(ca_certs=str(ca) if ca else None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        except (OSError, ssl.SSLError) as exc:
            what = f"CA file {ca}" if ca else "the system's CA certificates"
            raise UsageError(f"cannot use {what} for MQTT over TLS: {exc}",
                             hint="pass the PEM file of the CA that signed the broker's certificate") from exc
    client.max_queued_messages_set(buffer)
    client.reconnect_delay_set(min_delay=int(min_backoff_s), max_delay=int(max_backoff_s))
    if on_connect is not None:
        def connected(c: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
            if not reason.is_failure:
                on_connect(c)

        client.on_connect = connected
    if on_message is not None:
        client.on_message = lambda _c, _u, message: on_message(message.topic, message.payload)
    if on_subscribed is not None:
        client.on_subscribe = lambda _c, _u, _mid, reasons, _p: on_subscribed(sum(not r.is_failure for r in reasons), len(reasons))
    # connect_async + loop_start: the first connection, like every later one, is tried by
    # paho's thread, so a broker that is down at start stops nothing.
    client.connect_async(broker.host, broker.port, keepalive=30)
    client.loop_start()
    return client


def queue_full(rc: int) -> bool:
    import paho.mqtt.client as mqtt

    return rc == mqtt.MQTT_ERR_QUEUE_SIZE
