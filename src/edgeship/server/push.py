"""Push: tell devices "check now" over MQTT when what they should run changes (docs/server.md, "Push").

Library code that changes assignments only *records* a notice in the session
(``device_changed``, ``tag_changed``); the ``Pusher`` publishes the session's notices once
its transaction has committed. A notice sent before the commit would make the device check
in and read the old assignment, and one for a transaction that rolled back would be a lie.

Publishing never blocks or fails a request or the rollout job: paho's thread does the
network work, and its queue is bounded (``--mqtt-buffer``); a notice beyond it is dropped
and counted — the device still learns of the change at its next poll.

Every notice carries ``spread_s``: the window over which the devices that one commit
reaches should spread their check-ins (they wait a random part of it), so that a tag-wide
order or a big rollout stage does not bring the whole fleet to the servers in the same
second. It is the devices reached divided by ``--push-rate``; one device gets ~0.

With ``--mqtt-dynsec`` the same connection keeps the devices' broker accounts: enrollment and
decommissioning record the plugin's commands (``account_added``, ``account_removed``) and
they are published after the commit like notices (``edgeship.dynsec``).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from prometheus_client import Counter
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from edgeship import dynsec
from edgeship.broker import DeviceAccount
from edgeship.mqtt import Broker, device_topic, queue_full, start_client, tag_topic
from edgeship.server.models import Device
from edgeship.server.settings import ServerSettings

log = logging.getLogger("edgeship.server.push")

_PENDING = "edgeship_push_notices"
_ACCOUNTS = "edgeship_broker_accounts"  # dynamic-security commands, in order
WARN_EVERY_S = 60.0  # at most one warning a minute about dropped notices: a long outage drops many


@dataclass(frozen=True)
class Notice:
    topic: str
    reason: str  # assigned, rollout, experiment, rollback or withdrawn
    release: str | None = None  # name@version the device should now run, when there is one
    rollout: str | None = None
    devices: int = 1  # how many devices the topic reaches (a tag's: counted just before the commit)
    tag: tuple[str, str] | None = None  # key, value of a tag notice

    def payload(self, at: datetime, spread: float = 0.0) -> bytes:
        body: dict[str, Any] = {"reason": self.reason, "at": at.isoformat(timespec="seconds").replace("+00:00", "Z"),
                                "spread_s": spread}
        if self.release:
            body["release"] = self.release
        if self.rollout:
            body["rollout"] = self.rollout
        return json.dumps(body, separators=(",", ":")).encode()


def spread_s(devices: int, rate: float) -> float:
    """Seconds over which ``devices`` woken at once should spread their check-ins to arrive at ``rate`` a second."""
    return round(max(devices, 0) / rate, 3)


def _record(session: Session, notice: Notice) -> None:
    # Keyed by topic: a device changed twice in one transaction needs to hear it once.
    session.info.setdefault(_PENDING, {})[notice.topic] = notice


def device_changed(session: Session, device_id: str, reason: str, *, release: str | None = None, rollout: str | None = None) -> None:
    _record(session, Notice(device_topic(device_id), reason, release, rollout))


def tag_changed(session: Session, key: str, value: str, reason: str, *, release: str | None = None) -> None:
    _record(session, Notice(tag_topic(key, value), reason, release, tag=(key, value)))


def account_added(session: Session, device_id: str, password: str, tags: dict[str, Any]) -> None:
    """A device enrolled: its broker account and ACL are created when the transaction commits."""
    session.info.setdefault(_ACCOUNTS, []).extend(dynsec.add_device(device_id, password, {k: str(v) for k, v in tags.items()}))


def account_removed(session: Session, device_id: str) -> None:
    """A device was decommissioned: its broker account goes (and its connection) when the transaction commits."""
    session.info.setdefault(_ACCOUNTS, []).extend(dynsec.remove_device(device_id))


def count_reach(session: Session) -> None:
    """Count the devices each pending tag notice reaches (their spread depends on it).

    ``Pusher`` calls it just before the commit, inside the transaction; without push nothing
    is published, so the COUNT is not paid.
    """
    notices = session.info.get(_PENDING, {})
    for topic, n in notices.items():
        if n.tag is not None:
            notices[topic] = replace(n, devices=tagged_devices(session, *n.tag))


def tagged_devices(session: Session, key: str, value: str) -> int:
    """Live devices carrying ``key=value``: the reach of a tag notice, for its spread.

    One COUNT over the devices table (no index on a JSON member, so a scan — paid only when
    an operator assigns to a tag). ``as_string()`` renders ``tags ->> 'key'`` on PostgreSQL
    and ``JSON_EXTRACT(tags, '$."key"')`` on SQLite; tags are stored as strings (schemas.Tags),
    so both compare text with text, as the device listing's tag filter does.
    """
    query = select(func.count()).select_from(Device).where(
        Device.tags[key].as_string() == value, Device.decommissioned_at.is_(None))
    return int(session.scalar(query) or 0)


def pending(session: Session) -> list[Notice]:
    """The notices the session's transaction will publish when it commits."""
    return list(session.info.get(_PENDING, {}).values())


class Pusher:
    """One MQTT connection per server process, publishing notices at QoS 1, not retained."""

    def __init__(self, settings: ServerSettings, counter: Counter | None = None) -> None:
        broker = Broker.parse(settings.mqtt)
        # Random per process: workers and instances each hold their own connection, and a
        # broker drops the older of two clients that share an ID.
        client_id = f"edgeship-server-{secrets.token_hex(6)}"
        self._client = start_client(
            broker, client_id, ca=settings.mqtt_ca, username=settings.mqtt_username or None,
            password=settings.mqtt_password or None, buffer=settings.mqtt_buffer,
        )
        self._counter = counter
        self._rate = settings.push_rate
        self._dynsec = settings.mqtt_dynsec
        self._lock = threading.Lock()
        self._warned_at = -WARN_EVERY_S
        self.queued = 0
        self.dropped = 0

    @property
    def connected(self) -> bool:
        return bool(self._client.is_connected())

    def committing(self, session: Session) -> None:
        """``before_commit`` hook: the reach of tag notices, counted in the transaction that changed them."""
        count_reach(session)

    def committed(self, session: Session) -> None:
        """``after_commit`` hook: publish what the transaction recorded."""
        commands = session.info.pop(_ACCOUNTS, None)
        if commands and self._dynsec:
            # Before the notices: a device told to check in must be able to log in.
            self.command(commands)
        notices = session.info.pop(_PENDING, None)
        if notices:
            self.publish(list(notices.values()))

    def rolled_back(self, session: Session) -> None:
        session.info.pop(_PENDING, None)
        session.info.pop(_ACCOUNTS, None)

    def command(self, commands: list[dict[str, Any]]) -> None:
        """Queue dynamic-security commands at QoS 1 (paho resends them after a reconnection)."""
        try:
            info = self._client.publish(dynsec.CONTROL_TOPIC, dynsec.payload(commands), qos=1, retain=False)
        except Exception as exc:  # noqa: BLE001 - like a notice: the commit is done, the request must not fail
            log.error("cannot send broker account changes: %s", exc)
            return
        if queue_full(info.rc):
            log.error("broker account changes dropped (the MQTT buffer is full): %s; run `edgeship mqtt config --dynsec` "
                      "and restart the broker to resync", ", ".join(sorted({c.get("username") or c["rolename"] for c in commands})))

    def publish(self, notices: list[Notice]) -> None:
        """Queue one commit's notices; all of them share one spread, over every device they reach together."""
        at = datetime.now(timezone.utc)
        spread = spread_s(sum(n.devices for n in notices), self._rate)
        queued = dropped = 0
        for n in notices:
            try:
                info = self._client.publish(n.topic, n.payload(at, spread), qos=1, retain=False)
            except Exception as exc:  # noqa: BLE001 - a notice is best effort; the commit is already done
                # This runs inside session.commit(): an exception here would turn a request
                # whose change is stored into an error reply.
                log.error("cannot publish a push notice on %s: %s", n.topic, exc)
                dropped += 1
                continue
            if queue_full(info.rc):
                dropped += 1
            else:
                queued += 1
        if self._counter is not None:
            self._counter.labels("queued").inc(queued)
            self._counter.labels("dropped").inc(dropped)
        with self._lock:
            self.queued += queued
            self.dropped += dropped
            warn = dropped and time.monotonic() - self._warned_at > WARN_EVERY_S
            if warn:
                self._warned_at = time.monotonic()
        if warn:
            log.warning("MQTT push: %d notice(s) dropped, %d in all (the broker is away, or more notices are waiting "
                        "for its acknowledgement than --mqtt-buffer holds); those devices learn of the change at their "
                        "next poll", dropped, self.dropped)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def broker_accounts(session: Session, after: str = "", limit: int = 5000) -> list[DeviceAccount]:
    """Enrolled devices with an MQTT password, and their tags, by ID after ``after``: what `edgeship mqtt config` writes out."""
    rows = session.execute(
        select(Device.id, Device.mqtt_password_hash, Device.tags)
        .where(Device.id > after, Device.decommissioned_at.is_(None), Device.mqtt_password_hash.is_not(None))
        .order_by(Device.id)
        .limit(limit)
    )
    return [DeviceAccount(r.id, r.mqtt_password_hash, {k: str(v) for k, v in (r.tags or {}).items()}) for r in rows]
