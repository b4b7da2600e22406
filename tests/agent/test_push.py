"""MQTT push end to end: a real server, real agents and a real Mosquitto over TLS, configured by `edgeship mqtt config`;
and the agent's pure parts: a notice's spread, the random delay it leads to, the loop's deadline.

The agents poll only every 600 s here, so an install within seconds can only come from a notice.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from edgeship.agent.push import notice_spread, spread_delay
from edgeship.agent.wakeup import Wakeup
from edgeship.cli.main import run
from edgeship.loopback import free_port
from edgeship.mqtt import device_password, device_topic
from edgeship.runtime.config import RuntimeConfig, mqtt_login
from edgeship.runtime.mqtt import MqttPublisher
from edgeship.workspace import Workspace
from tests.agent.harness import REPO_ROOT, Device, Releases, Server
from tests.helpers.mosquitto import Mosquitto, Subscriber, needs_mosquitto

pytestmark = needs_mosquitto

LONG_POLL = "600"
RECONNECT_SPREAD_S = 1.0  # the catch-up check-in after each (re)connection comes within this
INSTALL_WITHIN_S = 20.0


@dataclass
class PushFleet:
    server: Server
    broker: Mosquitto
    tls: Path
    devices: dict[str, Device]
    agents: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def mqtt_url(self) -> str:
        return f"mqtts://127.0.0.1:{self.broker.port}"

    @property
    def ca(self) -> Path:
        return self.tls / "ca.pem"

    def start_agent(self, name: str) -> None:
        d = self.devices[name]
        log = d.data.parent / f"agent-{name}.log"
        with open(log, "wb") as out:
            self.agents[name] = subprocess.Popen(
                d.command("--mqtt", self.mqtt_url, "--mqtt-ca", str(self.ca), "--push-poll", LONG_POLL, "--poll", LONG_POLL,
                          "--push-reconnect-spread", str(RECONNECT_SPREAD_S)),
                stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
            )
        wait_until(lambda: "push: subscribed to 2 of 2 topic(s)" in log.read_text(), 20, f"agent {name} never subscribed:\n{log.read_text()[-2000:]}")
        time.sleep(RECONNECT_SPREAD_S + 1.0)  # the check-in that follows a (re)connection is over: what comes next is a notice's

    def credentials(self, name: str) -> tuple[str, str]:
        identity = json.loads((self.devices[name].data / "identity.json").read_text())
        return identity["device_id"], device_password(identity["secret"])

    def subscriber(self, name: str, topic: str, client_id: str) -> Subscriber:
        user, password = self.credentials(name)
        return Subscriber(self.broker.port, topic, client_id=client_id, username=user, password=password, ca=self.ca)


def wait_until(check: Callable[[], bool], timeout: float, message: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(message)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[PushFleet]:
    tmp = tmp_path_factory.mktemp("push")
    ws = Workspace.init(tmp / "ws", passphrase=None)
    releases = Releases(ws, tiny_gguf, tmp / "src")
    for version in ("1.0.0", "2.0.0", "3.0.0", "4.0.0", "5.0.0", "6.0.0"):
        releases.publish(version)
    server = Server.create(ws, tmp / "server", poll_interval_s=int(LONG_POLL))
    assert run(["certs", "init", "--data-dir", str(tmp / "server")]) == 0
    tls = tmp / "server" / "tls"
    server.start()
    devices = {}
    for name, site in (("a", "lab"), ("b", "dock")):
        d = devices[name] = Device(server, tmp / name, releases.root(), f"site={site}", server.enroll_token({"site": site}))
        assert d.run().returncode == 0  # enrolled: the broker files below name it
    port, out = free_port(), tmp / "broker-files"
    assert run(["mqtt", "config", "--server", server.url, "--token", server.admin_token, "--out", str(out),
                "--port", str(port), "--bind", "127.0.0.1", "--tls-cert", str(tls / "server.pem"),
                "--tls-key", str(tls / "server-key.pem"), "--tls-ca", str(tls / "ca.pem")]) == 0
    broker = Mosquitto(tmp / "broker", listeners=(out / "mosquitto.conf").read_text(), port=port)
    broker.start()
    server.stop()
    server.settings = server.settings.model_copy(update={
        "mqtt": f"mqtts://127.0.0.1:{port}", "mqtt_ca": tls / "ca.pem", "mqtt_username": "edgeship-server",
        "mqtt_password": (out / "server-password").read_text().strip(),
    })
    server.start()
    fleet = PushFleet(server, broker, tls, devices)
    try:
        for name in devices:
            fleet.start_agent(name)
        yield fleet
    finally:
        for proc in fleet.agents.values():
            proc.terminate()
            proc.wait(30)
        server.stop()
        broker.stop()


def test_broker_files_are_private_and_name_every_device(fleet: PushFleet) -> None:
    out = fleet.broker.dir.parent / "broker-files"
    assert (out / "passwords").stat().st_mode & 0o777 == 0o600
    users = [line.split(":", 1)[0] for line in (out / "passwords").read_text().splitlines()]
    assert sorted(users) == sorted(["edgeship-server", *(fleet.credentials(n)[0] for n in fleet.devices)])
    a_id = fleet.credentials("a")[0]
    assert f"topic read {device_topic(a_id)}" in (out / "acl").read_text()
    assert "allow_anonymous false" in (out / "mosquitto.conf").read_text()


def test_an_assignment_makes_the_agent_install_at_once(fleet: PushFleet) -> None:
    a, b = fleet.devices["a"], fleet.devices["b"]
    start = time.monotonic()
    fleet.server.admin("POST", "/v1/admin/assignments", {"release": "llm@1.0.0", "device_id": a.device_id})
    took = wait_until(lambda: a.version() == "1.0.0", INSTALL_WITHIN_S, "device a did not install 1.0.0 from a device notice")
    print(f"device notice → installed in {took:.1f} s")
    # A tag-wide order reaches the tag's topic, which b follows.
    fleet.server.assign("llm@2.0.0", tag="site=dock")
    took = wait_until(lambda: b.version() == "2.0.0", INSTALL_WITHIN_S, "device b did not install 2.0.0 from a tag notice")
    print(f"tag notice → installed in {took:.1f} s (both within {time.monotonic() - start:.1f} s)")
    assert a.version() == "1.0.0"  # a is not in site=dock


def test_a_device_cannot_read_another_devices_notices(fleet: PushFleet) -> None:
    b_id = fleet.devices["b"].device_id
    spy = fleet.subscriber("a", device_topic(b_id), client_id="spy-a")
    own = fleet.subscriber("b", device_topic(b_id), client_id="watch-b")
    wrong = Subscriber(fleet.broker.port, device_topic(b_id), client_id="wrong-pw", username=b_id, password="not-it", ca=fleet.ca)
    anonymous = Subscriber(fleet.broker.port, "#", client_id="anon", ca=fleet.ca)
    try:
        assert spy.ready() and own.ready()
        fleet.server.admin("POST", "/v1/admin/assignments", {"release": "llm@3.0.0", "device_id": b_id})
        [notice] = own.wait_for(1)
        assert notice["reason"] == "assigned" and notice["release"] == "llm@3.0.0" and notice["at"].endswith("Z")
        wait_until(lambda: fleet.devices["b"].version() == "3.0.0", INSTALL_WITHIN_S, "device b did not install 3.0.0")
        time.sleep(1.0)
        assert spy.messages == []  # the ACL kept b's notice from a
        assert wrong.messages == [] and not wrong.ready(0.5) and wrong.connect_codes and all("authorized" in c.lower() or "password" in c.lower() for c in wrong.connect_codes)
        assert anonymous.messages == [] and not anonymous.ready(0.1)
    finally:
        for s in (spy, own, wrong, anonymous):
            s.close()


def test_a_runtime_publishes_results_as_its_device_and_only_to_its_own_topics(fleet: PushFleet) -> None:
    a_id, b_id = fleet.devices["a"].device_id, fleet.devices["b"].device_id
    user, password = mqtt_login(RuntimeConfig(data_dir=fleet.devices["a"].data))
    assert user == a_id and password == fleet.credentials("a")[1]  # the runtime beside agent a logs in as device a
    own = MqttPublisher(fleet.mqtt_url, a_id, ca=fleet.ca, username=user, password=password)
    forged = MqttPublisher(fleet.mqtt_url, b_id, ca=fleet.ca, username=user, password=password)  # a claiming to be b
    try:
        wait_until(lambda: own.connected and forged.connected, 20, "the runtime publishers did not connect")
        assert own.publish("llm", {"output": "mine"}) and forged.publish("llm", {"output": "forged"})
        log = fleet.broker.log
        wait_until(lambda: f"Denied PUBLISH from edgeship-runtime-{b_id}" in log(), 10, "the broker let a write b's results")
        assert f"Denied PUBLISH from edgeship-runtime-{a_id}" not in log()
        assert f"Received PUBLISH from edgeship-runtime-{a_id}" in log()
    finally:
        own.close()
        forged.close()


def test_notices_resume_after_the_broker_restarts_and_requests_never_wait_for_it(fleet: PushFleet) -> None:
    a, b = fleet.devices["a"], fleet.devices["b"]
    fleet.broker.kill()
    start = time.monotonic()
    fleet.server.admin("POST", "/v1/admin/assignments", {"release": "llm@4.0.0", "device_id": a.device_id})
    assert time.monotonic() - start < 2.0  # the request does not wait for the broker
    time.sleep(1.0)
    assert a.version() == "1.0.0"  # no notice, and the next poll is ten minutes away
    fleet.broker.start()
    # Reconnected, the agent checks in once (it may have missed notices) and finds 4.0.0.
    took = wait_until(lambda: a.version() == "4.0.0", 45, "device a did not catch up after the broker came back")
    print(f"broker restart → device a installed 4.0.0 {took:.1f} s after the broker was back")
    b_watch = fleet.subscriber("b", device_topic(b.device_id), client_id="watch-b-after")
    try:
        assert b_watch.ready(30)
        time.sleep(1.0)
        fleet.server.admin("POST", "/v1/admin/assignments", {"release": "llm@4.0.0", "device_id": b.device_id})
        assert [n["release"] for n in b_watch.wait_for(1)] == ["llm@4.0.0"]
        wait_until(lambda: b.version() == "4.0.0", INSTALL_WITHIN_S, "device b did not install 4.0.0 from a notice after the restart")
    finally:
        b_watch.close()


def test_a_rollout_and_its_abort_push_every_device_they_move(fleet: PushFleet) -> None:
    a, b = fleet.devices["a"], fleet.devices["b"]
    assert a.version() == b.version() == "4.0.0"
    watch = fleet.subscriber("a", device_topic(a.device_id), client_id="watch-a-rollout")
    try:
        assert watch.ready()
        rollout = fleet.server.admin("POST", "/v1/admin/rollouts", {
            "release": "llm@5.0.0", "device_ids": [a.device_id, b.device_id], "pilot": "", "stages": "100", "rollback_to": "4.0.0"})
        for d in (a, b):
            wait_until(lambda d=d: d.version() == "5.0.0", INSTALL_WITHIN_S, f"{d.data.name} did not install the rollout's release")
        fleet.server.admin("POST", f"/v1/admin/rollouts/{rollout['id']}/abort", {"reason": "test", "rollback": True})
        for d in (a, b):
            wait_until(lambda d=d: d.version() == "4.0.0", INSTALL_WITHIN_S, f"{d.data.name} was not ordered back at once")
        notices = sorted(watch.wait_for(2), key=lambda n: n["at"])
        moves = [(n["reason"], n.get("release"), n["rollout"]) for n in notices if n["reason"] != "withdrawn"]
        assert moves == [("rollout", "llm@5.0.0", rollout["id"]), ("rollback", "llm@4.0.0", rollout["id"])]
        # Once a device is back, the rollout lets go of it (its plain order applies again): also a change it hears of.
        assert all(n["rollout"] == rollout["id"] for n in notices)
        metrics = httpx.get(fleet.server.url + "/metrics").text
        queued = float(re.search(r'^edgeship_push_notices_total\{outcome="queued"\} (\S+)$', metrics, re.M).group(1))  # type: ignore[union-attr]
        assert queued >= 8  # this server process alone sent at least the notices these tests waited for
    finally:
        watch.close()


LOG_TIME = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) "


def _log_time(stamp: str) -> float:
    day, ms = stamp.split(",")
    return time.mktime(time.strptime(day, "%Y-%m-%d %H:%M:%S")) + int(ms) / 1000


def test_devices_a_notice_reaches_together_spread_their_check_ins_over_its_window(fleet: PushFleet) -> None:
    """The last test here: it restarts the server with a --push-rate low enough that two devices get a window of 4 s."""
    a, b = fleet.devices["a"], fleet.devices["b"]
    rate, spread = 0.5, 4.0  # two devices in one commit / 0.5 check-ins a second
    fleet.server.stop()
    fleet.server.settings = fleet.server.settings.model_copy(update={"push_rate": rate})
    fleet.server.start()
    watch = fleet.subscriber("a", device_topic(a.device_id), client_id="watch-a-spread")
    try:
        assert watch.ready()
        start = time.monotonic()
        fleet.server.admin("POST", "/v1/admin/rollouts", {
            "release": "llm@6.0.0", "device_ids": [a.device_id, b.device_id], "pilot": "", "stages": "100"})
        [notice] = [n for n in watch.wait_for(1, timeout=INSTALL_WITHIN_S) if n.get("release") == "llm@6.0.0"]
        assert notice["spread_s"] == spread
        for d in (a, b):
            wait_until(lambda d=d: d.version() == "6.0.0", spread + INSTALL_WITHIN_S, f"{d.data.name} did not install the rollout's release")
        print(f"spread notice → both installed {time.monotonic() - start:.1f} s after the rollout started")
    finally:
        watch.close()
    delays = []
    for name in ("a", "b"):
        log = (fleet.devices[name].data.parent / f"agent-{name}.log").read_text()
        heard = re.search(LOG_TIME + r".*push: notice on .*\"release\":\"llm@6\.0\.0\".*; checking in within ([\d.]+) s$", log, re.MULTILINE)
        assigned = re.search(LOG_TIME + r".*llm@6\.0\.0: assigned$", log, re.MULTILINE)
        assert heard and assigned, log[-2000:]
        delay = float(heard.group(2))
        waited = _log_time(assigned.group(1)) - _log_time(heard.group(1))
        print(f"device {name}: drew {delay:.3f} s of the {spread} s window, checked in and was assigned {waited:.3f} s after the notice")
        assert 0 <= delay <= spread
        assert delay - 0.05 <= waited <= delay + 2.0  # the check-in came at the drawn moment, not at once
        delays.append(delay)
    assert delays[0] != delays[1] and max(delays) > 0.05  # each device drew its own moment


def test_a_notice_asks_for_its_spread_and_anything_else_counts_as_none() -> None:
    assert notice_spread(b'{"reason":"rollout","at":"2026-01-02T03:04:05Z","spread_s":200.0}') == 200.0
    assert notice_spread(b'{"reason":"assigned","spread_s":3}') == 3.0
    for bad in (b'{"reason":"assigned"}', b'{"spread_s":-5}', b'{"spread_s":"9"}', b'{"spread_s":true}', b'{"spread_s":null}',
                b'{"spread_s":NaN}', b'{"spread_s":Infinity}', b'[1,2]', b'"x"', b"not json", b"\xff\xfe", b""):
        assert notice_spread(bad) == 0.0, bad


def test_the_delay_is_a_uniform_part_of_the_window_capped_at_the_poll_interval() -> None:
    assert spread_delay(200.0, 600.0, 0.0) == 0.0
    assert spread_delay(200.0, 600.0, 0.5) == 100.0
    assert spread_delay(200.0, 600.0, 0.999) == pytest.approx(199.8)
    assert spread_delay(2000.0, 600.0, 0.5) == 300.0  # past the poll interval the device would come anyway
    assert spread_delay(1e300, 600.0, 0.999) < 600.0  # a forged notice costs at most one check-in within the poll interval
    assert spread_delay(0.0, 600.0, 0.9) == 0.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_earliest_requested_check_in_wins() -> None:
    clock = FakeClock()
    wakeup = Wakeup(clock)
    assert wakeup.due is None
    wakeup.request(5.0)
    assert wakeup.due == 1005.0
    clock.now += 1
    wakeup.request(10.0)  # a second notice during the wait cannot put the check-in off
    assert wakeup.due == 1005.0
    wakeup.request(2.0)  # but it can bring it forward
    assert wakeup.due == 1003.0
    wakeup.request(-4.0)  # never in the past: at once
    assert wakeup.due == 1001.0


def test_the_loop_wakes_at_the_requested_time_and_forgets_it_on_return() -> None:
    wakeup = Wakeup()
    started = time.monotonic()
    wakeup.wait(0.1)  # nothing requested: the whole timeout
    assert 0.09 <= time.monotonic() - started < 1.0
    timer = threading.Timer(0.1, wakeup.request, args=(0.2,))  # a notice arrives, asking for a check-in 0.2 s later
    timer.start()
    started = time.monotonic()
    wakeup.wait(30.0)
    assert 0.28 <= time.monotonic() - started < 2.0
    assert wakeup.due is None  # what was asked for is consumed by the round that follows
    wakeup.request(0.0)  # asked for during a round: the next wait returns at once
    started = time.monotonic()
    wakeup.wait(30.0)
    assert time.monotonic() - started < 0.5
    timer.join()
