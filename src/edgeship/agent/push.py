"""Push for the agent: listen on this device's notify topics and check in the moment a notice arrives.

The agent logs in to the broker as its device ID with the password derived from its own
secret (``edgeship.mqtt.device_password``), so enrollment hands out nothing new. Notices
carry no orders — the agent always asks the server what to run — so a lost or forged notice
costs at most one check-in. While the subscription is up the agent polls only every
``push_poll_interval_s`` (minutes); while it is down, at the server's interval as before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edgeship.agent.api import Identity
from edgeship.mqtt import Broker, device_password, device_topic, start_client, tag_topic

log = logging.getLogger("edgeship.agent.push")


class PushListener:
    """Started once the device has an identity; ``follow`` keeps its topics in step with its tags."""

    def __init__(self, url: str, ca: Path | None, poll_interval_s: float, wake: Callable[[], None]) -> None:
        self.broker = Broker.parse(url)  # checked at start, not at the first check-in
        self.ca = ca
        self.poll_interval_s = poll_interval_s
        self._wake = wake
        self._client: Any = None
        self._device_id = ""
        self._topics: set[str] = set()
        self._lock = threading.Lock()
        self.notices = 0

    @property
    def connected(self) -> bool:
        return self._client is not None and bool(self._client.is_connected())

    def checked_in(self, identity: Identity, tags: Mapping[str, str], server_poll_s: float) -> float:
        """After a check-in: follow the device's tags; return the seconds until the next check-in."""
        self.follow(identity, tags)
        return max(server_poll_s, self.poll_interval_s) if self.connected else server_poll_s

    def follow(self, identity: Identity, tags: Mapping[str, str]) -> None:
        topics = {device_topic(identity.device_id)} | {tag_topic(k, str(v)) for k, v in tags.items()}
        with self._lock:
            added, removed = topics - self._topics, self._topics - topics
            self._topics = topics
            client = self._client
            if client is None:
                self._device_id = identity.device_id
                self._client = start_client(
                    self.broker, f"edgeship-agent-{identity.device_id}", ca=self.ca, username=identity.device_id,
                    password=device_password(identity.secret), buffer=10, max_backoff_s=30,
                    on_connect=self._connected, on_message=self._notice, on_subscribed=self._subscribed,
                )
                return  # its first connection subscribes to every topic
        if client.is_connected():  # otherwise the next connection subscribes to them all
            if removed:
                client.unsubscribe(sorted(removed))
            if added:
                client.subscribe([(t, 1) for t in sorted(added)])

    def _connected(self, client: Any) -> None:
        with self._lock:
            topics = sorted(self._topics)
        client.subscribe([(t, 1) for t in topics])
        # Notices published while the connection was down are gone: check in once to catch up.
        self._wake()

    def _subscribed(self, granted: int, asked: int) -> None:
        log.info("push: subscribed to %d of %d topic(s) as %s", granted, asked, self._device_id)

    def _notice(self, topic: str, payload: bytes) -> None:
        self.notices += 1
        log.info("push: notice on %s: %s", topic, payload[:200].decode(errors="replace"))
        self._wake()

    def close(self) -> None:
        with self._lock:
            client, self._client, self._topics = self._client, None, set()
        if client is not None:
            client.disconnect()
            client.loop_stop()
