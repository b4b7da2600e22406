"""Publish inference results to MQTT: ``edgeship/<device-id>/<model>/results``, QoS 1, TLS.

The client (reconnects, QoS 1 resends, the bounded buffer) is `edgeship.mqtt`'s: while the
broker is away the newest results beyond ``buffer`` are dropped (and counted), so a long
outage cannot eat the device's memory.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeship.errors import RuntimeBackendError, UsageError
from edgeship.mqtt import Broker, queue_full, start_client
from edgeship.mqtt import results_topic as topic_for

MAX_PAYLOAD = 64 * 1024  # bytes; a result above this is published as its summary

__all__ = ["MAX_PAYLOAD", "MqttPublisher", "topic_for"]


class MqttPublisher:
    def __init__(self, url: str, device_id: str, *, ca: Path | None = None, username: str | None = None,
                 password: str | None = None, buffer: int = 1000, min_backoff_s: int = 1, max_backoff_s: int = 60,
                 on_drop: Callable[[], None] | None = None) -> None:
        broker = Broker.parse(url)
        self.device_id = device_id
        self._on_drop = on_drop
        try:
            self._client = start_client(broker, f"edgeship-runtime-{device_id}", ca=ca, username=username, password=password, buffer=buffer,
                                        min_backoff_s=min_backoff_s, max_backoff_s=max_backoff_s)
        except UsageError as exc:  # only TLS set-up fails here: a CA file the runtime was given is its backend's fault
            if ca is None:
                raise
            raise RuntimeBackendError(exc.message, hint=exc.hint) from exc

    @property
    def connected(self) -> bool:
        return bool(self._client.is_connected())

    def publish(self, model: str, result: dict[str, Any]) -> bool:
        """Queue one result; False if it was dropped because the buffer is full."""
        body = json.dumps({"device_id": self.device_id, "model": model, **result}, default=str).encode()
        if len(body) > MAX_PAYLOAD:
            trimmed = {k: v for k, v in result.items() if k != "output"}
            body = json.dumps({"device_id": self.device_id, "model": model, **trimmed,
                               "output": {"truncated": True, "bytes": len(body)}}, default=str).encode()
        info = self._client.publish(topic_for(self.device_id, model), body, qos=1)
        if queue_full(info.rc):
            if self._on_drop:
                self._on_drop()
            return False
        return True

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
