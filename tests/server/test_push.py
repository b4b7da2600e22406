"""Push on the server side: notices leave only after the commit with the spread of their batch, hashes the broker accepts, the ACL's shape."""

from __future__ import annotations

import base64
import contextlib
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from edgeship.broker import DeviceAccount, broker_files, mosquitto_hash
from edgeship.errors import UsageError
from edgeship.mqtt import MAX_BUFFER, device_topic, tag_topic
from edgeship.server import push
from edgeship.server.db import Database
from edgeship.server.models import Device
from edgeship.server.settings import ServerSettings
from tests.helpers.mosquitto import Mosquitto, Subscriber, needs_mosquitto


class Recorder:
    """Stands where the Pusher stands: what did the database hold when the notices left?"""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.sent: list[tuple[list[str], list[str]]] = []

    def committed(self, session: object) -> None:
        notices = push.pending(session)  # type: ignore[arg-type]
        if notices:
            with self.db.read() as other:  # another connection: sees only committed rows
                self.sent.append(([n.topic for n in notices], list(other.scalars(select(Device.id)))))

    def rolled_back(self, session: object) -> None:
        session.info.clear()  # type: ignore[attr-defined]


def _device(device_id: str) -> Device:
    return Device(id=device_id, secret_hash="0" * 64, tags={}, facts={}, state="idle", enrolled_at=datetime.now(timezone.utc))


def test_notices_leave_after_the_commit_and_never_for_a_rollback(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'push.db'}")
    db.migrate()
    recorder = Recorder(db)
    db.on_write(push.count_reach, recorder.committed, recorder.rolled_back)
    with db.write() as session:
        session.add(_device("dev_committed0001"))
        push.device_changed(session, "dev_committed0001", "assigned", release="app@1.0.0")
        push.device_changed(session, "dev_committed0001", "assigned", release="app@1.0.1")  # once per topic
        assert recorder.sent == []  # nothing before the commit
    assert recorder.sent == [([device_topic("dev_committed0001")], ["dev_committed0001"])]
    with pytest.raises(RuntimeError), db.write() as session:
        session.add(_device("dev_rolledback001"))
        push.device_changed(session, "dev_rolledback001", "assigned")
        raise RuntimeError("the request failed")
    with db.write() as session:  # a later transaction of the same factory starts clean
        session.add(_device("dev_other00000001"))
    assert len(recorder.sent) == 1
    db.dispose()


def test_broker_accounts_page_and_leave_out_devices_without_a_login(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'accounts.db'}")
    db.migrate()
    with db.write() as session:
        for i in range(5):
            d = _device(f"dev_account0000{i}")
            d.mqtt_password_hash, d.tags = mosquitto_hash(f"pw{i}"), {"site": f"s{i}"}
            session.add(d)
        session.add(_device("dev_beforepush001"))  # enrolled before migration 0004: no MQTT password
        gone = _device("dev_decommission1")
        gone.mqtt_password_hash, gone.decommissioned_at = mosquitto_hash("x"), datetime.now(timezone.utc)
        session.add(gone)
    with db.read() as session:
        first = push.broker_accounts(session, limit=3)
        rest = push.broker_accounts(session, after=first[-1].device_id, limit=3)
    assert [a.device_id for a in first + rest] == [f"dev_account0000{i}" for i in range(5)]
    assert rest[-1].tags == {"site": "s4"}
    db.dispose()


def test_notice_payload_is_small_json() -> None:
    notice = push.Notice(tag_topic("site", "lab"), "assigned", release="app@2.0.0")
    body = notice.payload(datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    assert body == b'{"reason":"assigned","at":"2026-01-02T03:04:05Z","spread_s":0.0,"release":"app@2.0.0"}'
    assert notice.topic == "edgeship/tags/site=lab/notify"
    assert b'"spread_s":200.0' in notice.payload(datetime(2026, 1, 2, tzinfo=timezone.utc), 200.0)


def test_spread_is_the_devices_reached_over_the_push_rate() -> None:
    assert push.spread_s(1, 500) == 0.002  # one device: at once, in effect
    assert push.spread_s(100_000, 500) == 200.0  # a rollout stage of 100,000 devices
    assert push.spread_s(1_000_000, 500) == 2000.0
    assert push.spread_s(1_000_000, 5000) == 200.0
    assert push.spread_s(0, 500) == push.spread_s(-3, 500) == 0.0
    assert push.spread_s(2, 3) == 0.667


def test_a_tag_notice_reaches_the_live_devices_with_that_tag(fresh_database_url: str) -> None:
    with contextlib.ExitStack() as stack:
        db = Database(fresh_database_url)
        stack.callback(db.dispose)
        db.migrate()
        tags = [{"site": "lab"}, {"site": "lab", "ring": "pilot"}, {"site": "dock"}, {}, {"site": "lab"}, {"a.b": "x y", "hw/rev-2": "é 1"}]
        with db.write() as session:
            for i, t in enumerate(tags):
                d = _device(f"dev_tagged00000{i}")
                d.tags = t
                session.add(d)
            gone = _device("dev_tagged_gone01")
            gone.tags, gone.decommissioned_at = {"site": "lab"}, datetime.now(timezone.utc)
            session.add(gone)
        with db.write() as session:
            assert push.tagged_devices(session, "site", "lab") == 3  # not the decommissioned one
            assert push.tagged_devices(session, "ring", "pilot") == 1
            assert push.tagged_devices(session, "site", "nowhere") == 0
            assert push.tagged_devices(session, "a.b", "x y") == 1  # a key with a dot is one JSON member, not a path
            assert push.tagged_devices(session, "hw/rev-2", "é 1") == 1  # every character a tag key may hold (schemas.check_tags)
            push.tag_changed(session, "site", "lab", "assigned", release="app@1.0.0")
            push.device_changed(session, "dev_tagged000003", "assigned", release="app@1.0.0")
            push.count_reach(session)  # what the Pusher does just before the commit
            assert sorted(n.devices for n in push.pending(session)) == [1, 3]


@needs_mosquitto
def test_every_notice_of_a_commit_carries_the_spread_of_the_whole_batch(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    sub = Subscriber(broker.port, "edgeship/#", client_id="watch-spread")
    settings = ServerSettings(data_dir=tmp_path / "d", mqtt=f"mqtt://127.0.0.1:{broker.port}", push_rate=4)
    pusher = push.Pusher(settings)
    try:
        assert sub.ready()
        wait_connected(pusher)
        batch = [push.Notice(device_topic(f"dev_{i}"), "rollout", release=f"app@2.0.{i}") for i in range(3)]
        pusher.publish([*batch, push.Notice(tag_topic("site", "lab"), "assigned", devices=7)])  # 3 + 7 devices at 4/s
        assert sorted(n["spread_s"] for n in sub.wait_for(4)) == [2.5] * 4
        pusher.publish([push.Notice(device_topic("dev_alone"), "assigned")])
        assert sub.wait_for(5)[-1]["spread_s"] == 0.25
    finally:
        pusher.close()
        sub.close()
        broker.stop()


def test_the_buffer_stays_within_paho_s_16_bit_message_ids() -> None:
    assert ServerSettings().mqtt_buffer <= MAX_BUFFER == 65_535
    assert ServerSettings.load({"mqtt_buffer": 65_535}, environ={}).mqtt_buffer == 65_535
    with pytest.raises(UsageError, match="at most 65,535") as caught:
        ServerSettings.load({"mqtt_buffer": 100_000}, environ={})
    assert "--mqtt-buffer" in (caught.value.hint or "")


@pytest.mark.parametrize("url", ["mqtts://u:s3cret@host:abc", "mqtt://u:s3cret@host:99999", "ftp://u:s3cret@host"])
def test_a_bad_mqtt_url_is_refused_without_quoting_its_password(url: str) -> None:
    with pytest.raises(UsageError) as caught:
        ServerSettings.load({"mqtt": url}, environ={})
    assert "--mqtt" in (caught.value.hint or "") and "s3cret" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no chained error quoting the value
    assert ServerSettings.load({"mqtt": "mqtts://u:s3cret@host:8883"}, environ={}).mqtt.endswith(":8883")


@needs_mosquitto
def test_a_full_buffer_of_notices_from_one_commit_all_arrive(tmp_path: Path) -> None:
    # The broker keeps everything for the slow subscriber (its default drops beyond 1,000 queued).
    broker = Mosquitto(tmp_path / "broker", settings="max_queued_messages 0")
    broker.start()
    sub = Subscriber(broker.port, "edgeship/devices/+/notify", client_id="watch-many")
    pusher = push.Pusher(ServerSettings(data_dir=tmp_path / "d", mqtt=f"mqtt://127.0.0.1:{broker.port}"))
    count = ServerSettings().mqtt_buffer
    try:
        assert sub.ready()
        wait_connected(pusher)
        pusher.publish([push.Notice(device_topic(f"dev_{i}"), "rollout") for i in range(count)])
        assert (pusher.queued, pusher.dropped) == (count, 0)
        assert sub.wait_for_topics(count, timeout=60) == count
    finally:
        pusher.close()
        sub.close()
        broker.stop()


def wait_connected(pusher: push.Pusher, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pusher.connected:
        assert time.monotonic() < deadline, "the pusher did not connect to the broker"
        time.sleep(0.05)


@needs_mosquitto
def test_hashes_match_mosquitto_passwd(tmp_path: Path) -> None:
    pw_file = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw_file), "someone", "correct horse"], check=True)
    theirs = pw_file.read_text().strip().split(":", 1)[1]
    _, seven, iterations, salt, _digest = theirs.split("$")
    ours = mosquitto_hash("correct horse", iterations=int(iterations), salt=base64.b64decode(salt))
    assert seven == "7" and ours == theirs
    assert mosquitto_hash("correct horse") != mosquitto_hash("correct horse")  # a fresh salt each time


H1, H2, HS = (mosquitto_hash(p) for p in ("one", "two", "server"))


def test_acl_gives_each_device_only_its_own_topics(tmp_path: Path) -> None:
    files = broker_files(
        [DeviceAccount("dev_b", H2, {"site": "dock"}), DeviceAccount("dev_a", H1, {"site": "lab", "ring": "pilot"})],
        "edgeship-server", HS, out_dir=tmp_path, port=8883, certfile=tmp_path / "c.pem", keyfile=tmp_path / "k.pem",
    )
    assert files.passwords.splitlines() == [f"edgeship-server:{HS}", f"dev_a:{H1}", f"dev_b:{H2}"]
    lines = [line for line in files.acl.splitlines() if not line.startswith("#")]
    sections = {block.splitlines()[0]: block.splitlines()[1:] for block in "\n".join(lines).split("\n\n")}
    assert sections["user edgeship-server"] == ["topic write edgeship/devices/+/notify", "topic write edgeship/tags/+/notify"]
    assert sections["user dev_a"] == [
        "topic read edgeship/devices/dev_a/notify",
        "topic read edgeship/tags/ring=pilot/notify",
        "topic read edgeship/tags/site=lab/notify",
        "topic write edgeship/dev_a/+/results",
    ]
    assert "allow_anonymous false" in files.conf and f"password_file {tmp_path / 'passwords'}" in files.conf
    # What comes from the server cannot add lines (users, rules) to the files.
    with pytest.raises(UsageError, match="broker user name"):
        broker_files([DeviceAccount("dev_x\nuser edgeship-server", H1, {})], "edgeship-server", HS, out_dir=tmp_path)
    with pytest.raises(UsageError, match="not a Mosquitto"):
        broker_files([DeviceAccount("dev_x", H1 + "\nedgeship-server:" + HS, {})], "edgeship-server", HS, out_dir=tmp_path)
    with pytest.raises(UsageError, match="not a Mosquitto"):  # a trailing line break would end the line early
        broker_files([DeviceAccount("dev_x", H1 + "\n", {})], "edgeship-server", HS, out_dir=tmp_path)


@needs_mosquitto
def test_while_the_broker_is_away_notices_wait_up_to_the_bound(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    sub = Subscriber(broker.port, "edgeship/devices/+/notify", client_id="watch")
    assert sub.ready()
    broker.stop()  # the durable subscription survives in the broker's persistence file
    settings = ServerSettings(data_dir=tmp_path / "d", mqtt=f"mqtt://127.0.0.1:{broker.port}", mqtt_buffer=2)
    pusher = push.Pusher(settings)
    try:
        started = time.monotonic()
        pusher.publish([push.Notice(device_topic(f"dev_{i}"), "assigned", release=f"app@1.0.{i}") for i in range(5)])
        assert time.monotonic() - started < 0.5  # nothing waits for the broker
        assert (pusher.queued, pusher.dropped) == (2, 3)
        broker.start()
        assert [n["release"] for n in sub.wait_for(2, timeout=30)] == ["app@1.0.0", "app@1.0.1"]  # the first two, once
        time.sleep(0.5)
        assert sorted(set(sub.topics)) == [device_topic("dev_0"), device_topic("dev_1")]
    finally:
        pusher.close()
        sub.close()
        broker.stop()
