"""Publish inference results to MQTT: ``edgeship/<device-id>/<model>/results``, QoS 1, TLS.

paho-mqtt does the hard parts: its network thread reconnects with exponential backoff
(``reconnect_delay_set``), keeps every QoS 1 message until the broker acknowledges it and
resends the unacknowledged ones after a reconnect. The buffer is bounded by
``max_queued_messages``: while the broker is away the newest results beyond it are
dropped (and counted), so a long outage cannot eat the device's memory.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from edgeship.errors import RuntimeBackendError, UsageError

MAX_PAYLOAD = 64 * 1024  # bytes; a result above this is published as its summary
_TOPIC_UNSAFE = str.maketrans({"/": "_", "+": "_", "#": "_"})


def topic_for(device_id: str, model: str) -> str:
    # A '/', '+' or '#' inside a name would change the topic's levels or act as a wildcard.
    return f"edgeship/{device_id.translate(_TOPIC_UNSAFE)}/{model.translate(_TOPIC_UNSAFE)}/results"


class MqttPublisher:
    def __init__(self, url: str, device_id: str, *, ca: Path | None = None, buffer: int = 1000,
                 min_backoff_s: int = 1, max_backoff_s: int = 60, on_drop: Callable[[], None] | None = None) -> None:
        import paho.mqtt.client as mqtt

        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise UsageError(f"MQTT URL {url!r} not understood", hint="write mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
        self.device_id = device_id
        self._on_drop = on_drop
        self._mqtt = mqtt
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edgeship-runtime-{device_id}")
        if parts.username:
            client.username_pw_set(unquote(parts.username), unquote(parts.password) if parts.password else None)
        if parts.scheme == "mqtts":
            try:
                client.tls_set(ca_certs=str(ca) if ca else None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
            except (OSError, ssl.SSLError) as exc:
                raise RuntimeBackendError(f"cannot use CA file {ca} for MQTT over TLS: {exc}",
                                          hint="pass the PEM file of the CA that signed the broker's certificate") from exc
        client.max_queued_messages_set(buffer)
        client.reconnect_delay_set(min_delay=min_backoff_s, max_delay=max_backoff_s)
        self._client = client
        # connect_async + loop_start: the first connection, like every later one, is tried
        # by paho's thread, so a broker that is down at boot does not stop the runtime.
        client.connect_async(parts.hostname, parts.port or (8883 if parts.scheme == "mqtts" else 1883), keepalive=30)
        client.loop_start()

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    def publish(self, model: str, result: dict[str, Any]) -> bool:
        """Queue one result; False if it was dropped because the buffer is full."""
        body = json.dumps({"device_id": self.device_id, "model": model, **result}, default=str).encode()
        if len(body) > MAX_PAYLOAD:
            trimmed = {k: v for k, v in result.items() if k != "output"}
            body = json.dumps({"device_id": self.device_id, "model": model, **trimmed,
                               "output": {"truncated": True, "bytes": len(body)}}, default=str).encode()
        info = self._client.publish(topic_for(self.device_id, model), body, qos=1)
        if info.rc == self._mqtt.MQTT_ERR_QUEUE_SIZE:
            if self._on_drop:
                self._on_drop()
            return False
        return True

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
