"""Several server instances behind haproxy, over one PostgreSQL and one SeaweedFS, with real agents.

Three instances (own data dirs, the same online keys) share the database and the bucket;
haproxy spreads requests round-robin and drops an instance whose /readyz fails. One
instance is killed with SIGKILL in the middle of a rollout: the rollout must complete on
every device, no background job may run twice (webhook deliveries counted at a real
receiver; timestamps sampled from every instance, one content per version), and every event
a device sent must be stored once.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from edgeship.cli.main import run
from edgeship.loopback import CLI, Processes, free_port, server_ready, wait_for
from edgeship.samples.llama import write_tiny_llama
from edgeship.server.bootstrap import init_data_dir
from edgeship.server.settings import ServerSettings
from edgeship.workspace import Workspace
from tests.agent.harness import Device, Releases, Server, no_duplicate_steps
from tests.helpers.haproxy import HAPROXY, start_haproxy
from tests.helpers.seaweedfs import BUCKET, SeaweedFS
from tests.helpers.server import postgres_schema
from tests.rollouts.conftest import Receiver

INSTANCES = 3
AGENTS = 4
SECRET = "multi-instance-hook-secret"


def _require_haproxy() -> None:
    if not HAPROXY.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{HAPROXY} is missing, but CI=true: .ci/run installs haproxy")
        pytest.skip("the multi-instance test needs haproxy (apt-get install haproxy)")


@dataclass
class TimestampSampler:
    """Reads timestamp.json from every instance directly, all the time, and the snapshot it names."""

    urls: list[str]
    token: str
    seen: dict[int, set[str]] = field(default_factory=dict)  # version → sha256 of each content seen
    unservable: list[str] = field(default_factory=list)
    regressions: list[str] = field(default_factory=list)  # an instance serving an older version than before
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        last = dict.fromkeys(self.urls, 0)
        with httpx.Client(headers={"authorization": f"Bearer {self.token}"}, timeout=2) as client:
            while not self.stop.is_set():
                for url in self.urls:
                    try:
                        r = client.get(f"{url}/repo/metadata/timestamp.json")
                        if r.status_code != 200:
                            continue
                        doc = r.json()["signed"]
                        self.seen.setdefault(doc["version"], set()).add(hashlib.sha256(r.content).hexdigest())
                        if doc["version"] < last[url]:
                            self.regressions.append(f"{url} served timestamp {doc['version']} after {last[url]}")
                        last[url] = doc["version"]
                        snapshot = doc["meta"]["snapshot.json"]["version"]
                        if client.get(f"{url}/repo/metadata/{snapshot}.snapshot.json").status_code != 200:
                            self.unservable.append(f"{url} timestamp {doc['version']} names snapshot {snapshot}")
                    except httpx.TransportError:
                        continue  # the killed instance
                time.sleep(0.05)


@dataclass
class Cluster:
    lb: Server  # the fleet's one URL: haproxy (only its url, admin and events are used)
    instances: list[subprocess.Popen[bytes]]
    urls: list[str]
    releases: Releases
    logs: Path


def _settings(data: Path, database_url: str, **extra: object) -> ServerSettings:
    # A 6 s timestamp re-signed when under 4 s: the job runs every ~2 s, often enough to race.
    return ServerSettings(data_dir=data, port=free_port(), database_url=database_url, blob_store=f"s3://{BUCKET}/multi",
                          poll_interval_s=1, rollout_check_s=0.3, webhook_retry_s=0.2, timestamp_expiry_days=6 / 86400,
                          timestamp_margin_s=4, timestamp_check_s=0.2, access_log=False, log_level="warning", **extra)  # type: ignore[arg-type]


@pytest.fixture
def cluster(seaweedfs: SeaweedFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    _require_haproxy()
    for key, value in seaweedfs.env.items():
        monkeypatch.setenv(key, value)  # `server init` copies the workspace's files into the bucket
    ws = Workspace.init(tmp_path / "ws", passphrase=None)
    releases = Releases(ws, write_tiny_llama(tmp_path / "model.gguf"), tmp_path / "src")
    releases.publish("1.0.0")
    procs = Processes()
    with postgres_schema() as database_url:
        try:
            settings = [_settings(tmp_path / f"instance-{i}", database_url) for i in range(INSTANCES)]
            # The first init puts the metadata in the database; the others find it there and install keys.
            token = init_data_dir(settings[0], ws).token
            for s in settings[1:]:
                init_data_dir(s, ws)
            instances = [procs.spawn([*CLI, "server"], tmp_path / f"instance-{i}.log", s.to_env()) for i, s in enumerate(settings)]
            urls = [f"http://127.0.0.1:{s.port}" for s in settings]
            for url in urls:
                wait_for(f"instance {url}", lambda url=url: server_ready(url), 30, tmp_path)  # type: ignore[misc]
            _, lb_url = start_haproxy(procs, tmp_path, urls)
            lb = Server(ServerSettings(port=int(lb_url.rsplit(":", 1)[1])), token)
            yield Cluster(lb, instances, urls, releases, tmp_path)
        finally:
            procs.close()


def test_init_copies_the_workspace_files_into_the_bucket_once(seaweedfs: SeaweedFS, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in seaweedfs.env.items():
        monkeypatch.setenv(key, value)
    ws = Workspace.init(tmp_path / "ws", passphrase=None)
    Releases(ws, write_tiny_llama(tmp_path / "model.gguf"), tmp_path / "src").publish("1.0.0")
    targets = sorted(ws.repository().targets().signed.targets)
    store = ["--blob-store", f"s3://{BUCKET}/init", "-w", str(ws.root)]
    assert run(["server", "init", "--data-dir", str(tmp_path / "a"), *store]) == 0
    out = capsys.readouterr().out
    assert f"{len(targets)} file(s) uploaded, 0 already there" in out and f"[1/{len(targets)}] uploaded" in out
    assert sorted(seaweedfs.keys("init")) == targets
    for path in targets:
        assert seaweedfs.get(f"init/{path}") == (ws.repo_dir / path).read_bytes()
    # Another data dir over the same (SQLite) database would be another server; over the same
    # bucket, nothing is sent twice.
    assert run(["server", "init", "--data-dir", str(tmp_path / "b"), *store]) == 0
    assert f"0 file(s) uploaded, {len(targets)} already there" in capsys.readouterr().out
    assert not (tmp_path / "a" / "repository" / "blobs").exists()  # blobs went to the bucket only


def test_second_init_over_the_same_database_installs_keys_only(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", passphrase=None)
    other = Workspace.init(tmp_path / "other", passphrase=None)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    init_data_dir(ServerSettings(data_dir=tmp_path / "a", database_url=url), ws)
    init_data_dir(ServerSettings(data_dir=tmp_path / "b", database_url=url), ws)
    assert (tmp_path / "b" / "keys" / "timestamp.pem").is_file()
    assert not (tmp_path / "b" / "repository" / "metadata").exists()  # filled from the database at start
    with pytest.raises(Exception, match="timestamp key is not the one|snapshot key is not the one"):
        init_data_dir(ServerSettings(data_dir=tmp_path / "c", database_url=url), other)


@pytest.mark.slow
def test_rollout_survives_an_instance_killed_and_no_job_runs_twice(cluster: Cluster) -> None:
    lb = cluster.lb
    receiver = Receiver()
    lb.admin("POST", "/v1/admin/webhooks", {"url": receiver.start(), "secret": SECRET})
    sampler = TimestampSampler(cluster.urls, lb.admin_token)
    sampling = threading.Thread(target=sampler.run, daemon=True)
    sampling.start()
    procs = Processes()
    devices = []
    try:
        for i in range(AGENTS):
            device = Device(lb, cluster.logs / f"device-{i}", cluster.releases.root(), f"dev=d{i}", lb.enroll_token({"dev": f"d{i}"}))
            procs.spawn(device.command(), cluster.logs / f"device-{i}.log")
            devices.append(device)
        wait_for("every agent to enroll", lambda: len(lb.admin("GET", "/v1/admin/devices")) == AGENTS, 30, cluster.logs)
        # Published through haproxy: one instance signs, the others must serve what it signed.
        cluster.releases.publish("2.0.0")
        ws = cluster.releases.ws
        ws.config.server_url, ws.config.server_admin_token = lb.url, lb.admin_token
        ws.save_config()
        assert run(["server", "sync", "-w", str(ws.root)]) == 0

        first = lb.admin("POST", "/v1/admin/rollouts", {"release": "llm@1.0.0", "pilot": "", "stages": "100", "bake": "0"})
        wait_for("llm@1.0.0 on every device", lambda: lb.admin("GET", f"/v1/admin/rollouts/{first['id']}")["status"] == "completed", 60, cluster.logs)
        second = lb.admin("POST", "/v1/admin/rollouts", {"release": "llm@2.0.0", "pilot": "", "stages": "50,100", "bake": "1"})
        wait_for("the first stage to start", lambda: any(d.version() == "2.0.0" for d in devices), 60, cluster.logs)
        cluster.instances[0].kill()  # SIGKILL: no graceful shutdown, requests cut mid-flight
        cluster.instances[0].wait()
        wait_for("llm@2.0.0 on every device", lambda: lb.admin("GET", f"/v1/admin/rollouts/{second['id']}")["status"] == "completed", 60, cluster.logs)
        assert [d.version() for d in devices] == ["2.0.0"] * AGENTS
        wait_for("both webhook deliveries", lambda: len(receiver.posts) >= 2, 15, cluster.logs)
        time.sleep(1.5)  # a second instance sending a delivery again would do it within its next ticks
        wait_for("every device's event queue to drain", lambda: all(not list((d.data / "events").glob("*.json")) for d in devices), 15, cluster.logs)
    finally:
        sampler.stop.set()
        sampling.join(5)
        procs.close()
        receiver.stop()

    # Webhooks: one delivery per rollout completion, none repeated.
    payloads = receiver.payloads(SECRET)
    assert len(payloads) == len(receiver.posts) == 2, payloads
    assert sorted((p["type"], p["rollout"]) for p in payloads) == sorted(("rollout.completed", r["id"]) for r in (first, second))
    assert len({h["x-edgeship-delivery"] for h, _ in receiver.posts}) == 2

    # Timestamps: re-signed many times by whichever instance held the lock; never two contents
    # for one version (a lost update), never an older one after a newer one from an instance,
    # and never one naming a snapshot its instance cannot serve.
    assert len(sampler.seen) >= 5, sampler.seen
    assert all(len(hashes) == 1 for hashes in sampler.seen.values()), {v: h for v, h in sampler.seen.items() if len(h) > 1}
    assert not sampler.unservable, sampler.unservable[:5]
    assert not sampler.regressions, sampler.regressions[:5]

    # Events: every one a device sent was accepted (its queue is empty) and is stored once.
    for device in devices:
        events = lb.events(device.device_id)
        assert len({e["id"] for e in events}) == len(events)
        no_duplicate_steps(events)
        assert any(e["type"] == "state" and e["release"] == "llm@2.0.0" for e in events)
    print(json.dumps({"timestamp_versions": len(sampler.seen), "webhooks": len(payloads)}))
