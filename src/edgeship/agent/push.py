"""Push for the agent: listen on this device's notify topics and check in soon after a notice arrives.

The agent logs in to the broker as its device ID with the password derived from its own
secret (``edgeship.mqtt.device_password``), so enrollment hands out nothing new. Notices
carry no orders — the agent always asks the server what to run — so a lost or forged notice
costs at most one check-in. While the subscription is up the agent polls only every
``push_poll_interval_s`` (minutes); while it is down, at the server's interval as before.

"Soon" is a uniform random delay in ``[0, spread_s]``, the window the notice names (the server
sizes it so that the devices one change reaches arrive at ``--push-rate`` check-ins a second),
capped at the poll interval. The catch-up check-in after every (re)connection to the broker
waits a random part of ``reconnect_spread_s`` likewise: a broker restart reconnects the whole
fleet within seconds.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edgeship.agent.api import Identity
from edgeship.agent.config import DEFAULT_RECONNECT_SPREAD_S
from edgeship.errors import UsageError
from edgeship.mqtt import Broker, device_password, device_topic, start_client, tag_topic

log = logging.getLogger("edgeship.agent.push")


def notice_spread(payload: bytes) -> float:
    """The ``spread_s`` a notice names; 0 for a notice without a usable one (old servers, garbage)."""
    try:
        spread = json.loads(payload).get("spread_s", 0)
    except (ValueError, AttributeError):  # not JSON, or JSON but not an object
        return 0.0
    if isinstance(spread, bool) or not isinstance(spread, (int, float)) or not math.isfinite(spread):
        return 0.0
    return max(0.0, float(spread))


def spread_delay(spread_s: float, cap_s: float, draw: float) -> float:
    """A delay uniform in ``[0, min(spread_s, cap_s)]`` for ``draw`` uniform in ``[0, 1)``.

    Capped: past the poll interval the device would check in anyway; a forged notice with a
    huge spread therefore costs no more than one (delayed) check-in.
    """
    return max(0.0, min(spread_s, cap_s)) * draw


class PushListener:
    """Started once the device has an identity; ``follow`` keeps its topics in step with its tags."""

    def __init__(self, url: str, ca: Path | None, poll_interval_s: float, wake: Callable[[float], None], *,
                 reconnect_spread_s: float = DEFAULT_RECONNECT_SPREAD_S, draw: Callable[[], float] = random.random) -> None:
        self.broker = Broker.parse(url)  # checked at start, not at the first check-in
        if ca is not None and not ca.is_file():
            raise UsageError(f"--mqtt-ca {ca} is not a file", hint="pass the PEM file of the CA that signed the broker's certificate")
        self.ca = ca
        self.poll_interval_s = poll_interval_s
        self.reconnect_spread_s = reconnect_spread_s
        self._wake = wake  # wake(within_s): never blocks, so paho's thread goes straight back to the network
        self._draw = draw
        self._client: Any = None
        self._device_id = ""
        self._topics: set[str] = set()
        self._granted = False  # the broker granted every topic of the last subscription
        self._lock = threading.Lock()
        self.notices = 0

    @property
    def listening(self) -> bool:
        """Connected, with every topic granted: only then may the agent poll at the long interval."""
        return self._client is not None and bool(self._client.is_connected()) and self._granted

    def poll_interval(self, server_poll_s: float) -> float:
        """The seconds until the next check-in when nothing wakes the agent earlier."""
        return max(server_poll_s, self.poll_interval_s) if self.listening else server_poll_s

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
            self._granted = False  # until this connection's SUBACK says so
        client.subscribe([(t, 1) for t in topics])
        # Notices published while the connection was down are gone: check in once to catch up,
        # at a random moment, as every other device reconnecting after a broker restart does.
        delay = spread_delay(self.reconnect_spread_s, self.poll_interval_s, self._draw())
        log.info("push: connected; catching up with a check-in in %.3f s", delay)
        self._wake(delay)

    def _subscribed(self, granted: int, asked: int) -> None:
        self._granted = granted == asked
        if self._granted:
            log.info("push: subscribed to %d of %d topic(s) as %s", granted, asked, self._device_id)
        else:
            # Usually broker files written before this device or its tags existed.
            log.warning("push: the broker refused %d of %d topic(s) for %s; polling at the server's interval "
                        "(rerun `edgeship mqtt config` and reload the broker)", asked - granted, asked, self._device_id)

    def _notice(self, topic: str, payload: bytes) -> None:
        self.notices += 1
        delay = spread_delay(notice_spread(payload), self.poll_interval_s, self._draw())
        log.info("push: notice on %s: %s; checking in within %.3f s", topic, payload[:200].decode(errors="replace"), delay)
        self._wake(delay)

    def close(self) -> None:
        with self._lock:
            client, self._client, self._topics = self._client, None, set()
        if client is not None:
            client.disconnect()
            client.loop_stop()
