"""Many simulated devices subscribed to their MQTT notice topics, in one process and one thread.

    python benchmarks/mqtt_fleet.py --port 1883 --devices FILE [--tag-topic TOPIC] [--timeout 120]

Each line of FILE is ``<device id> [<username> <password>]``; every device is one paho client
(its own TCP connection, client id and QoS 1 subscription to ``edgeship/devices/<id>/notify``,
and to ``--tag-topic`` if given), all driven by one selector loop instead of a thread per
client. When every client holds its subscriptions the process prints ``READY <n>``. It records
the monotonic clock (system-wide on Linux, so comparable across processes) when each device's
first notice on each topic arrives. Once every device has one on the tag topic it prints
``TAG {"received": …, "times": […]}``, then the same for their own topics (``DEVICE {…}``);
without ``--tag-topic`` only the latter. At the timeout it prints what it has.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt

TOPIC = "edgeship/devices/{id}/notify"
MAX_PENDING = 64


_BIND_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux >= 4.2


class _Client(mqtt.Client):
    """A paho client whose connection comes from one of many loopback source addresses.

    Ten thousand clients, plus the TIME_WAIT sockets earlier runs leave behind, nearly fill
    the ephemeral port range of one source address, and paho's plain ``bind(('', 0))`` then
    searches that range for every client (milliseconds each, most of a 10,000-device start).
    Spreading the clients over 127.0.0.2-127.0.0.201 with the port chosen at connect time
    (IP_BIND_ADDRESS_NO_PORT) keeps every search short.
    """

    source = "127.0.0.2"

    def _create_socket_connection(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_IP, _BIND_NO_PORT, 1)
            sock.bind((self.source, 0))
            sock.settimeout(self._connect_timeout)
            sock.connect((self._host, self._port))
        except OSError:
            sock.close()
            raise
        return sock


class Fleet:
    """paho clients on one selector: the socket callbacks keep the selector's write interest current."""

    def __init__(self, host: str, port: int, tag_topic: str | None = None) -> None:
        self.host, self.port, self.tag_topic = host, port, tag_topic
        self.sel = selectors.DefaultSelector()
        self.clients: list[mqtt.Client] = []
        self.subscribed = 0
        self.first: dict[str, dict[str, float]] = {"device": {}, "tag": {}}

    def add(self, device_id: str, username: str | None = None, password: str | None = None) -> None:
        c = _Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{device_id}", userdata=device_id)
        c.source = f"127.0.0.{2 + len(self.clients) % 200}"
        if username:
            c.username_pw_set(username, password)
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        c.on_socket_open = lambda client, _u, sock: self.sel.register(sock, selectors.EVENT_READ, client)
        c.on_socket_close = lambda _c, _u, sock: self.sel.unregister(sock)
        c.on_socket_register_write = lambda client, _u, sock: self.sel.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, client)
        c.on_socket_unregister_write = lambda client, _u, sock: self.sel.modify(sock, selectors.EVENT_READ, client)
        # Keepalive longer than any run: no pings compete with the notices.
        c.connect(self.host, self.port, keepalive=3600)
        self.clients.append(c)

    def _on_connect(self, client: mqtt.Client, device_id: str, _flags: object, reason: mqtt.ReasonCode, _props: object) -> None:
        if reason.is_failure:
            raise SystemExit(f"device {device_id}: the broker refused the connection ({reason})")
        topics = [(TOPIC.format(id=device_id), 1)] + ([(self.tag_topic, 1)] if self.tag_topic else [])
        client.subscribe(topics)

    def _on_subscribe(self, _client: mqtt.Client, device_id: str, _mid: int, reasons: list[mqtt.ReasonCode], _props: object) -> None:
        if any(r.is_failure for r in reasons):
            raise SystemExit(f"device {device_id}: the broker refused the subscription ({reasons})")
        self.subscribed += 1

    def _on_message(self, _client: mqtt.Client, device_id: str, msg: mqtt.MQTTMessage) -> None:
        self.first["tag" if msg.topic == self.tag_topic else "device"].setdefault(device_id, time.monotonic())

    def poll(self, timeout: float) -> None:
        """One round: read and write every socket that is ready."""
        for key, events in self.sel.select(timeout=timeout):
            client: mqtt.Client = key.data
            if events & selectors.EVENT_READ:
                client.loop_read()
            if events & selectors.EVENT_WRITE:
                client.loop_write()

    def run_until(self, done: Callable[[], bool], deadline: float) -> None:
        while not done() and time.monotonic() < deadline:
            self.poll(0.2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--devices", required=True, help="file: one '<id> [<username> <password>]' per line")
    ap.add_argument("--tag-topic", help="a topic every device also subscribes to (a notice for a whole tag)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for subscriptions, then for notices")
    args = ap.parse_args()
    fleet = Fleet(args.host, args.port, args.tag_topic)
    for line in open(args.devices).read().splitlines():  # noqa: SIM115 - read at once
        fields = line.split()
        if fields:
            fleet.add(*fields[:3])
            # At most MAX_PENDING devices between connect and acknowledged subscription. An
            # unpaced burst outran the broker: 10,000 devices took 32 s to subscribe, idle most of
            # it (connects waiting as on lost SYNs), instead of 1.5 s.
            fleet.run_until(lambda: len(fleet.clients) - fleet.subscribed < MAX_PENDING, time.monotonic() + args.timeout)
    n = len(fleet.clients)
    fleet.run_until(lambda: fleet.subscribed >= n, time.monotonic() + args.timeout)
    if fleet.subscribed < n:
        raise SystemExit(f"only {fleet.subscribed} of {n} devices subscribed within {args.timeout:g}s")
    print(f"READY {n}", flush=True)
    for kind in ["tag", "device"] if args.tag_topic else ["device"]:
        got = fleet.first[kind]
        fleet.run_until(lambda got=got: len(got) >= n, time.monotonic() + args.timeout)
        print(f"{kind.upper()} " + json.dumps({"received": len(got), "times": sorted(got.values())}), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
