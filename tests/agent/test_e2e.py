"""The agent against the real update server: real processes, real HTTP, real signatures."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from edgeship.agent.backoff import Backoff
from edgeship.agent.config import AgentConfig
from edgeship.agent.fetcher import ResumableFetcher
from edgeship.agent.journal import Assignment
from edgeship.agent.loop import Agent, read_status
from edgeship.agent.machine import State
from edgeship.agent.store import CURRENT
from edgeship.errors import ServerError
from edgeship.release.manifest import HealthSuite, Manifest
from edgeship.samples.llama import write_tiny_llama
from edgeship.store.digest import Digest, hash_file
from edgeship.workspace import Workspace
from edgeship.loopback import free_port
from tests.agent.harness import Device, Releases, Server, assert_consistent, no_duplicate_steps
from tests.agent.throttle import DripProxy

WEIGHTS = 3 * 1024 * 1024  # the 2.0.0 release carries this many bytes of weights


@dataclass
class Fleet:
    server: Server
    releases: Releases
    tmp: Path
    manifests: dict[str, Manifest]

    def device(self, name: str) -> Device:
        token = self.server.enroll_token({"dev": name})
        return Device(self.server, self.tmp / name, self.releases.root(), f"dev={name}", token)

    def installed(self, name: str, *versions: str) -> Device:
        """A device that went through ``versions`` in order, each committed."""
        d = self.device(name)
        for v in versions:
            self.server.assign(f"llm@{v}", tag=d.tag)
            r = d.run()
            assert r.returncode == 0 and d.version() == v, r.stderr
        return d

    def weights_blob(self) -> Digest:
        return Digest(self.manifests["2.0.0"].components[2].hexdigest)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("e2e")
    ws = Workspace.init(tmp / "ws", passphrase=None)
    rel = Releases(ws, tiny_gguf, tmp / "src")
    weights = tmp / "weights.bin"
    weights.write_bytes(os.urandom(WEIGHTS))
    manifests = {
        "1.0.0": rel.publish("1.0.0"),
        "2.0.0": rel.publish("2.0.0", health=HealthSuite(command="test -s weights.bin", timeout_s=30), big=weights),
        "3.0.0": rel.publish("3.0.0", broken_model=True),
        "4.0.0": rel.publish("4.0.0", health=HealthSuite(command="echo sick >&2; exit 3", timeout_s=30)),
        "5.0.0": rel.publish("5.0.0", health=HealthSuite(command="sleep 60", timeout_s=1)),
        "6.0.0": rel.publish("6.0.0"),
        # A fine-tune: one tensor of the model changed, signed with a delta from 6.0.0 as `release push` does.
        "7.0.0": rel.publish("7.0.0", model=write_tiny_llama(tmp / "tuned.gguf", weights={"output_norm.weight": np.full(64, 1.5, np.float32)}),
                             deltas=True),
    }
    server = Server.create(ws, tmp / "server")
    server.start()
    try:
        yield Fleet(server, rel, tmp, manifests)
    finally:
        server.stop()


def states(server: Server, device: Device) -> list[tuple[str, str | None]]:
    return [(e["state"], e["release"]) for e in server.events(device.device_id) if e["type"] == "state"]


def test_enroll_install_upgrade_report_and_feedback(fleet: Fleet) -> None:
    d = fleet.installed("happy", "1.0.0", "2.0.0")
    assert (d.version(), d.version("previous")) == ("2.0.0", "1.0.0")
    assert (d.data / "identity.json").stat().st_mode & 0o777 == 0o600
    log = states(fleet.server, d)
    v2 = [s for s, r in log if r == "llm@2.0.0"]
    assert v2 == ["assigned", "waiting_window", "downloading", "verifying", "staged", "switching", "trial", "committed"]
    status = subprocess.run([*d.command()[:3], "status", "--data-dir", str(d.data), "--json"], capture_output=True, text=True)
    doc = json.loads(status.stdout)
    assert doc["current"]["version"] == "2.0.0" and doc["state"] == "committed" and doc["queued_events"] == 0
    fb = subprocess.run([*d.command()[:1], "-c", "from edgeship.cli.main import main; main()", "feedback",
                         "--data-dir", str(d.data), "--rating", "4", "--comment", "faster"], capture_output=True, text=True)
    assert fb.returncode == 0, fb.stderr
    assert d.run().returncode == 0
    feedback = [e for e in fleet.server.events(d.device_id) if e["type"] == "feedback"]
    assert [(e["release"], e["data"]["rating"], e["data"]["comment"]) for e in feedback] == [("llm@2.0.0", 4, "faster")]
    no_duplicate_steps(fleet.server.events(d.device_id))
    assert_consistent(d, {"2.0.0"})


@pytest.mark.parametrize(("version", "why"), [
    ("3.0.0", "model check failed"),
    ("4.0.0", "exited 3"),
    ("5.0.0", "did not finish within 1s"),
])
def test_a_bad_release_is_rolled_back_and_not_retried(fleet: Fleet, version: str, why: str) -> None:
    d = fleet.installed(f"bad-{version}", "1.0.0")
    fleet.server.assign(f"llm@{version}", tag=d.tag)
    r = d.run()
    assert r.returncode == 1 and why in r.stderr
    assert d.version() == "1.0.0"
    rolled = [e for e in fleet.server.events(d.device_id) if e["state"] == "rolled_back"]
    assert len(rolled) == 1 and why in rolled[0]["data"]["reason"]
    d.run()  # the same assignment again: the device does not try it a second time
    assert d.version() == "1.0.0"
    assert sum(1 for s, _ in states(fleet.server, d) if s == "switching") == 2  # 1.0.0 and the bad one, once
    assert_consistent(d, {"1.0.0"})


def test_downgrade_needs_a_signed_rollback_and_an_order(fleet: Fleet) -> None:
    d = fleet.installed("downgrade", "1.0.0", "2.0.0")
    before = sorted(p.name for p in d.store.releases_dir.iterdir())
    fleet.server.assign("llm@1.0.0", tag=d.tag)  # not a rollback order
    r = d.run()
    assert r.returncode == 1 and "needs a rollback order" in r.stderr
    assert d.version() == "2.0.0" and sorted(p.name for p in d.store.releases_dir.iterdir()) == before
    fleet.server.assign("llm@1.0.0", tag=d.tag, rollback=True)  # 2.0.0 was signed with rollback_to 1.0.0
    r = d.run()
    assert r.returncode == 0, r.stderr
    assert (d.version(), d.version("previous")) == ("1.0.0", "2.0.0")
    assert_consistent(d, {"1.0.0"})


def test_a_rollback_order_the_operator_did_not_sign_is_refused(fleet: Fleet) -> None:
    d = fleet.installed("unsigned-rollback", "6.0.0")
    fleet.server.assign("llm@1.0.0", tag=d.tag, rollback=True)  # 6.0.0 may only go back to 5.0.0
    r = d.run()
    assert r.returncode == 1 and "allows a rollback only to 5.0.0" in r.stderr
    assert d.version() == "6.0.0"


def test_a_device_trusting_other_keys_installs_nothing(fleet: Fleet, tmp_path: Path) -> None:
    other = Workspace.init(tmp_path / "other", passphrase=None)
    d = fleet.device("wrong-key")
    d.root = other.repo_dir / "metadata" / "1.root.json"
    fleet.server.assign("llm@1.0.0", tag=d.tag)
    r = d.run()
    assert r.returncode == 1 and "not signed by a trusted key" in r.stderr
    assert d.store.link(CURRENT) is None and not list(d.store.blobs.digests())


def upgrade_under_faults(fleet: Fleet, name: str, faults: str, start: str = "1.0.0",
                         to: str = "2.0.0") -> tuple[Device, subprocess.CompletedProcess[str]]:
    """A device on ``start`` is assigned ``to`` and runs once while the server injects ``faults``."""
    d = fleet.installed(name, start)
    fleet.server.restart(faults=faults)
    try:
        fleet.server.assign(f"llm@{to}", tag=d.tag)
        return d, d.run()
    finally:
        fleet.server.restart()


def test_a_release_the_repository_never_signed_is_refused(fleet: Fleet) -> None:
    # A compromised server assigns a release that is not in the signed targets.
    d, r = upgrade_under_faults(fleet, "forged", f"assign:llm@9.0.0:{'ab' * 32}")
    assert r.returncode == 1 and "not signed by the repository" in r.stderr
    assert d.version() == "1.0.0" and len(list(d.store.releases_dir.iterdir())) == 1


def test_download_cut_mid_file_resumes_with_range(fleet: Fleet) -> None:
    d, r = upgrade_under_faults(fleet, "cut", f"cut:{WEIGHTS // 3 + 12345}")
    assert r.returncode == 0, r.stderr
    # Resumed from what reached the disk: at most the cut, at least what came in whole chunks.
    m = re.search(rf"resuming \w+ at byte (\d+) of {WEIGHTS}", r.stderr)
    assert m and 0 < int(m.group(1)) <= WEIGHTS // 3 + 12345, r.stderr
    assert_consistent(d, {"2.0.0"})


def test_bytes_flipped_in_transit_are_rejected_and_fetched_again(fleet: Fleet) -> None:
    d, r = upgrade_under_faults(fleet, "flip", f"flip:{WEIGHTS // 2}")
    assert r.returncode == 0, r.stderr
    assert "do not match the signed hash" in r.stderr
    assert_consistent(d, {"2.0.0"})
    no_duplicate_steps(fleet.server.events(d.device_id))


def test_bytes_flipped_in_the_partial_file_are_rejected(fleet: Fleet) -> None:
    d = fleet.installed("flip-disk", "1.0.0")
    fleet.server.assign("llm@2.0.0", tag=d.tag)
    r = d.run(crash_at=f"download:{WEIGHTS // 2}")
    assert r.returncode == -9
    partial = d.store.partial(fleet.weights_blob())
    with open(partial, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0x01]))
    r = d.run()
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr and "do not match the signed hash" in r.stderr
    assert_consistent(d, {"2.0.0"})


def test_server_stopped_mid_download_and_restarted(fleet: Fleet) -> None:
    d = fleet.installed("outage", "1.0.0")
    fleet.server.assign("llm@2.0.0", tag=d.tag)
    fleet.server.restart(faults=f"stall:{WEIGHTS // 2}")  # the server hangs mid-file, then dies
    proc = subprocess.Popen(d.command("--once"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = d.store.partial(fleet.weights_blob())
    deadline = time.monotonic() + 30
    while not (partial.exists() and partial.stat().st_size >= WEIGHTS // 4) and time.monotonic() < deadline:
        time.sleep(0.05)
    fleet.server.stop()
    time.sleep(2)  # the agent sees the connection drop, then connection refused, and backs off
    fleet.server.start()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert re.search(r"resuming \w+ at byte [1-9]", err), err
    assert_consistent(d, {"2.0.0"})
    no_duplicate_steps(fleet.server.events(d.device_id))


def test_disk_full_during_download_leaves_the_old_release_running(fleet: Fleet) -> None:
    d = fleet.installed("full", "1.0.0")
    fleet.server.assign("llm@2.0.0", tag=d.tag)
    r = d.run(fsize_limit=1024 * 1024)  # no file may grow past 1 MiB: the 3 MiB weights cannot land
    assert r.returncode == 1 and "ran out of space" in r.stderr
    assert d.version() == "1.0.0" and d.store.is_complete(d.store.link(CURRENT))
    failed = [e for e in fleet.server.events(d.device_id) if e["state"] == "failed"]
    assert failed and "ran out of space" in failed[-1]["data"]["reason"]
    r = d.run()  # space is back: the same assignment is tried again and resumes
    assert r.returncode == 0, r.stderr
    assert_consistent(d, {"2.0.0"})


STEPS = ("assigned", "waiting_window", "downloading", "verifying", "staged", "switching", "trial", "committed")
GOOD_POINTS = [f"{s}:{p}" for s in STEPS for p in ("before", "after")] + ["switching:mid", f"download:{WEIGHTS // 2}"]
BAD_POINTS = ["trial:after", "rolled_back:before", "rolled_back:after"]


def kill_and_recover(fleet: Fleet, base: Device, points: list[str], expect: str) -> None:
    """For each point: a copy of ``base`` is killed there, restarted, and must end on ``expect``."""

    def one(i: int, point: str) -> None:
        d = base.clone(base.data.with_name(f"{base.data.name}-{i}"))
        r = d.run(crash_at=point)
        assert r.returncode == -9, (point, r.stderr[-2000:])
        # Killed: `current` still names a complete release, old or new, never a mix.
        cur = d.store.link(CURRENT)
        assert cur is not None and d.store.is_complete(cur), point
        r = d.run()
        assert r.returncode == 0 or expect != "2.0.0", (point, r.stderr[-2000:])
        assert_consistent(d, {expect})

    # The copies are independent devices (same identity, separate data dirs): run a few at
    # once, the agents spend most of their time in fsync and in the server.
    with ThreadPoolExecutor(max_workers=3) as pool:
        for f in [pool.submit(one, i, p) for i, p in enumerate(points)]:
            f.result()
    no_duplicate_steps(fleet.server.events(base.device_id))


@pytest.mark.slow
def test_kill_9_at_every_step_of_an_upgrade_ends_on_a_complete_release(fleet: Fleet) -> None:
    base = fleet.installed("kill", "1.0.0")
    fleet.server.assign("llm@2.0.0", tag=base.tag)
    kill_and_recover(fleet, base, GOOD_POINTS, "2.0.0")


@pytest.mark.slow
def test_kill_9_at_every_step_of_a_rollback_ends_on_the_old_release(fleet: Fleet) -> None:
    base = fleet.installed("kill-bad", "1.0.0")
    fleet.server.assign("llm@4.0.0", tag=base.tag)
    kill_and_recover(fleet, base, BAD_POINTS, "1.0.0")
    rolled = [e for e in fleet.server.events(base.device_id) if e["state"] == "rolled_back"]
    assert len(rolled) == len(BAD_POINTS)  # one per killed device, never twice for one job


NOON_BERLIN = datetime(2026, 6, 10, 12, 0, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()
NIGHT = {"start": "02:00", "end": "04:00"}


def in_process_agent(fleet: Fleet, d: Device, now: list[float]) -> Agent:
    """An agent on ``d``'s data dir whose clock the test sets; `Agent.work` stands in for check-ins."""
    agent = Agent(AgentConfig(data_dir=d.data, server_url=fleet.server.url, timezone="Europe/Berlin"), clock=lambda: now[0])
    agent.repo_url = fleet.server.url + "/repo/"
    return agent


def test_downloads_early_and_switches_only_inside_the_window_after_notice(fleet: Fleet) -> None:
    d = fleet.installed("window", "1.0.0")
    now = [NOON_BERLIN]
    agent = in_process_agent(fleet, d, now)
    m = fleet.manifests["2.0.0"]
    assignment = Assignment("llm", "2.0.0", m.release_id, window=NIGHT, notice_s=3600)
    try:
        entry = agent.work(assignment)
        # Downloaded and staged at noon, but the switch waits for 02:00 local time.
        assert entry is not None and entry.step is State.STAGED and d.version() == "1.0.0"
        assert agent.store.is_complete(m.release_id)
        job = read_status(d.data)["job"]
        assert job["switch_at"] == "2026-06-11T00:00:00Z" and job["window"] == {"start": "02:00", "end": "04:00"}
        now[0] += 13 * 3600  # 01:00 local: still outside the window
        assert agent.work(assignment).step is State.STAGED and d.version() == "1.0.0"
        now[0] += 3600 + 60  # 02:01 local
        entry = agent.work(assignment)
    finally:
        agent.close()
    assert entry is not None and entry.step is State.COMMITTED and d.version() == "2.0.0"


def test_fetcher_stops_at_the_signed_length_and_restarts_a_partial_that_is_not_ours(fleet: Fleet, tmp_path: Path) -> None:
    digest = fleet.weights_blob()
    url = f"{fleet.server.url}/repo/blobs/sha256/{digest.hex}"
    fetcher = ResumableFetcher(headers={"Authorization": f"Bearer {fleet.server.admin_token}"})
    dest = tmp_path / "part"
    try:
        fetcher.download_to(url, dest, 1000)  # the server has more than was signed: endless data
        assert dest.stat().st_size == 1000
        dest.write_bytes(b"x" * (WEIGHTS + 5))  # longer than signed: thrown away, fetched whole
        fetcher.download_to(url, dest, WEIGHTS)
        assert hash_file(dest) == (digest, WEIGHTS)
        os.truncate(dest, WEIGHTS // 2)  # half there: only the rest is fetched
        fetcher.download_to(url, dest, WEIGHTS)
        assert hash_file(dest) == (digest, WEIGHTS)
    finally:
        fetcher.close()


def test_fetcher_gives_up_after_attempts_without_progress_and_backs_off(tmp_path: Path) -> None:
    waits: list[float] = []
    fetcher = ResumableFetcher(attempts=4, backoff=Backoff(base_s=1.0, cap_s=8.0), sleep=waits.append, rand=lambda: 0.5)
    with pytest.raises(ServerError, match="4 attempts in a row failed"):
        fetcher.download_to(f"http://127.0.0.1:{free_port()}/repo/blobs/sha256/{'0' * 64}", tmp_path / "p", 10)
    assert waits == [0.5, 1.0, 2.0]  # half of 1, 2, 4 s: full jitter with rand 0.5
    fetcher.close()


def test_a_job_waiting_for_its_window_is_dropped_when_the_operator_assigns_another(fleet: Fleet) -> None:
    d = fleet.installed("supersede", "1.0.0")
    agent = in_process_agent(fleet, d, [NOON_BERLIN])
    m2, m6 = fleet.manifests["2.0.0"], fleet.manifests["6.0.0"]
    try:
        assert agent.work(Assignment("llm", "2.0.0", m2.release_id, window=NIGHT)).step is State.STAGED
        assert agent.store.blobs.has(fleet.weights_blob())
        entry = agent.work(Assignment("llm", "6.0.0", m6.release_id))
        fleet.server.assign("llm@6.0.0", tag=d.tag)
        agent.round()  # a real check-in: nothing left to do but report the events
    finally:
        agent.close()
    assert entry is not None and entry.step is State.COMMITTED and d.version() == "6.0.0"
    assert not agent.store.blobs.has(fleet.weights_blob())  # the abandoned download was collected
    failed = [e for e in fleet.server.events(d.device_id) if e["state"] == "failed"]
    assert [(e["release"], e["data"]["reason"]) for e in failed] == [("llm@2.0.0", "superseded by llm@6.0.0")]


def model_blob_requests(stderr: str, manifest: Manifest) -> int:
    return stderr.count(f"/repo/blobs/sha256/{manifest.components[0].hexdigest}")


def test_a_changed_model_arrives_as_a_signed_delta(fleet: Fleet) -> None:
    d = fleet.installed("delta", "6.0.0")
    fleet.server.assign("llm@7.0.0", tag=d.tag)
    r = d.run()
    assert r.returncode == 0, r.stderr
    assert "model rebuilt from a" in r.stderr and model_blob_requests(r.stderr, fleet.manifests["7.0.0"]) == 0
    assert_consistent(d, {"7.0.0"})
    assert not list(d.store.partial_dir.iterdir())
    # The device reports what the update cost: the patch, not the model.
    [download] = [e for e in fleet.server.events(d.device_id) if e["type"] == "download" and e["release"] == "llm@7.0.0"]
    model = fleet.manifests["7.0.0"].components[0]
    assert download["data"]["by_delta"] == ["model"]
    assert download["data"]["bytes_downloaded"] < model.size / 10 < download["data"]["full_size"]


def test_a_delta_damaged_in_transit_falls_back_to_the_whole_file(fleet: Fleet) -> None:
    # The first file served is the patch.
    d, r = upgrade_under_faults(fleet, "delta-flip", "flip:100", start="6.0.0", to="7.0.0")
    assert r.returncode == 0, r.stderr
    assert "delta for model is unusable" in r.stderr and model_blob_requests(r.stderr, fleet.manifests["7.0.0"]) == 1
    assert_consistent(d, {"7.0.0"})


def test_a_running_agent_holds_its_data_dir_polls_and_stops_on_sigterm(fleet: Fleet) -> None:
    d = fleet.installed("daemon", "1.0.0")
    proc = subprocess.Popen(d.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        fleet.server.assign("llm@2.0.0", tag=d.tag)
        deadline = time.monotonic() + 60
        while d.version() != "2.0.0" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert d.version() == "2.0.0"  # picked up at a later check-in, no restart needed
        second = d.run()
        assert second.returncode == 1 and "another agent is running" in second.stderr
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert_consistent(d, {"2.0.0"})


def test_the_root_given_on_a_first_start_with_nothing_assigned_is_kept(fleet: Fleet) -> None:
    d = fleet.device("first-root")
    assert d.run().returncode == 0  # enrolled, nothing to install
    without_root = [a for a in d.command("--once") if a not in ("--root", str(d.root))]
    fleet.server.assign("llm@1.0.0", tag=d.tag)
    r = subprocess.run(without_root, text=True, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert d.version() == "1.0.0"


HOLD_A_TEMP = """
import sys, time
from pathlib import Path
from edgeship.store.fsutil import atomic_writer
with atomic_writer(Path(sys.argv[1])) as f:
    f.write(b'{"half": ')
    f.flush()
    print("writing", flush=True)
    time.sleep(600)
"""


def writer_inside_its_temp(dest: Path) -> subprocess.Popen[str]:
    """A real process that wrote part of ``dest``'s temp and has not renamed it yet."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_A_TEMP, str(dest)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "writing\n"
    return proc


def temps(data: Path) -> list[Path]:
    return sorted(p for p in data.rglob(".*.tmp") if p.is_file())


def test_temps_left_by_killed_writers_are_swept_at_start_but_not_a_live_writers(fleet: Fleet) -> None:
    d = fleet.installed("temps", "1.0.0")
    killed = [writer_inside_its_temp(d.data / name) for name in ("journal.json", "status.json", "identity.json")]
    killed.append(writer_inside_its_temp(d.data / "events" / f"{'9' * 12}-x.json"))
    killed.append(writer_inside_its_temp(d.store.manifest_dir / "x.json"))
    for proc in killed:
        proc.kill()  # SIGKILL between write and rename, as a power cut or the OOM killer would
        proc.wait()
    live = writer_inside_its_temp(d.data / "events" / f"{'8' * 12}-y.json")  # `edgeship feedback`, say
    try:
        left = temps(d.data)
        assert len(left) == 6
        for t in left:  # older than the grace a writer has between creating its temp and locking it
            os.utime(t, (time.time() - 60, time.time() - 60))
        r = d.run()
        assert r.returncode == 0, r.stderr
        assert [t.name for t in temps(d.data)] == [t.name for t in left if t.name.startswith(f".{'8' * 12}")]
        assert "removed 5 temp files" in r.stderr
    finally:
        live.kill()
        live.wait()
    assert_consistent(d, {"1.0.0"})


def test_a_resumed_download_reports_the_bytes_it_fetched_and_the_bytes_it_resumed(fleet: Fleet) -> None:
    d = fleet.installed("resume-report", "1.0.0")
    fleet.server.assign("llm@2.0.0", tag=d.tag)
    assert d.run(crash_at=f"download:{WEIGHTS // 2}").returncode == -9
    had = d.store.partial(fleet.weights_blob()).stat().st_size
    r = d.run()
    assert r.returncode == 0, r.stderr
    [download] = [e for e in fleet.server.events(d.device_id) if e["type"] == "download" and e["release"] == "llm@2.0.0"]
    data = download["data"]
    config = fleet.manifests["2.0.0"].components[1].size  # fetched whole before the kill
    assert 0 < had and data["bytes_resumed"] == config + had
    assert data["bytes_fetched"] == WEIGHTS - had
    assert data["bytes_downloaded"] == data["full_size"] == config + WEIGHTS
    # `edgeship events` says it in words.
    shown = subprocess.run([sys.executable, "-c", "from edgeship.cli.main import main; main()", "events", "--server", fleet.server.url,
                            "--token", fleet.server.admin_token, "--device", d.device_id], capture_output=True, text=True)
    [line] = [ln for ln in shown.stdout.splitlines() if " download " in ln and "llm@2.0.0" in ln]
    assert f"resumed {had / 2**20:.1f} MiB" in line and "fetched " in line, shown.stdout


def test_metadata_trickling_from_a_mirror_fails_the_check_in_at_its_deadline_then_succeeds(fleet: Fleet) -> None:
    d = fleet.installed("slow-metadata", "1.0.0")
    fleet.server.assign("llm@2.0.0", tag=d.tag)
    # The first metadata file the mirror serves comes at 2 bytes a second, as in the field.
    with DripProxy(fleet.server.settings.port, prefix="/repo/metadata/", step=1, every_s=0.5, times=1) as proxy:
        d.via = proxy.url
        r = d.run("--metadata-timeout", "2", timeout=90)
        assert r.returncode == 1 and "too slow" in r.stderr and "took longer than 2 s" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and d.version() == "1.0.0" and proxy.slowed == 1
        assert "too slow" in read_status(d.data)["last_error"]
        r = d.run("--metadata-timeout", "2", timeout=90)  # the mirror recovered: the next check-in goes through
    assert r.returncode == 0, r.stderr
    assert_consistent(d, {"2.0.0"})


def test_a_blob_trickling_below_the_rate_floor_is_cut_and_resumed_after_a_backoff(fleet: Fleet) -> None:
    d = fleet.installed("slow-blob", "1.0.0")
    fleet.server.assign("llm@2.0.0", tag=d.tag)
    prefix = f"/repo/blobs/sha256/{fleet.weights_blob().hex}"
    with DripProxy(fleet.server.settings.port, prefix=prefix, step=1024, every_s=0.5, times=1) as proxy:
        d.via = proxy.url
        r = d.run("--min-rate", "8KiB/s", "--rate-window", "2", timeout=90)
    assert r.returncode == 0, r.stderr
    assert "is too slow" in r.stderr and "below the floor of 8192 B/s" in r.stderr and proxy.slowed == 1
    assert re.search(r"resuming \w+ at byte [1-9]", r.stderr), r.stderr


def test_a_relative_data_dir_installs_and_commits(fleet: Fleet) -> None:
    """`agent run --data-dir NAME` from the dir above: the trial's checks run in the release's own
    directory, so a data dir left relative made every install fail its trial and roll back."""
    d = fleet.device("relative")
    fleet.server.assign("llm@2.0.0", tag=d.tag)  # has a health suite, run in the release's directory
    argv = d.command("--once")
    argv[argv.index("--data-dir") + 1] = d.data.name
    r = subprocess.run(argv, cwd=d.data.parent, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert [s for s, rel in states(fleet.server, d) if rel == "llm@2.0.0"][-2:] == ["trial", "committed"], r.stderr
    assert_consistent(d, {"2.0.0"})


def test_a_rate_floor_above_the_cap_is_refused_at_start(tmp_path: Path, releases: Releases) -> None:
    d = Device(Server.create(releases.ws, tmp_path / "server"), tmp_path / "dev", releases.root(), "dev=x", "token")
    r = d.run("--max-rate", "10KB/s", "--min-rate", "20KB/s")
    assert r.returncode == 2 and "is above --max-rate" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (d.data / "identity.json").exists()


MiB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 16 MiB file system (tmpfs) for a device's data dir."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs (root is needed): {r.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here (root is needed): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """A file taking all of ``disk``'s free space but ``leave`` bytes (``leave=0``: to the last block,
    while another process may be writing too)."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        if leave:
            os.posix_fallocate(f.fileno(), 0, os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize - leave)
            return filler
        for step in (256 * 1024, 4096):
            with contextlib.suppress(OSError):  # grow until ENOSPC, in big steps and then small ones
                while True:
                    os.posix_fallocate(f.fileno(), os.fstat(f.fileno()).st_size, step)
    return filler


def device_on(fleet: Fleet, disk: Path, name: str) -> Device:
    d = fleet.device(name)
    d.data = disk / "data"
    fleet.server.assign("llm@1.0.0", tag=d.tag)
    r = d.run("--keep-free", "1MiB")
    assert r.returncode == 0 and d.version() == "1.0.0", r.stderr
    return d


def test_a_download_that_cannot_fit_is_refused_up_front_and_starts_once_there_is_room(fleet: Fleet, small_disk: Path) -> None:
    d = device_on(fleet, small_disk, "full-up-front")
    fleet.server.assign("llm@2.0.0", tag=d.tag)
    filler = fill(small_disk, leave=2 * MiB)  # 3 MiB of weights and 1 MiB kept free do not fit
    r = d.run("--keep-free", "1MiB")
    assert r.returncode == 1 and "not enough disk space for llm@2.0.0" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert d.version() == "1.0.0" and not d.store.partial(fleet.weights_blob()).exists()
    assert "not enough disk space" in read_status(d.data)["last_error"]
    failed = [e for e in fleet.server.events(d.device_id) if e["state"] == "failed"]
    assert failed and "not enough disk space" in failed[-1]["data"]["reason"]
    filler.unlink()
    r = d.run("--keep-free", "1MiB")
    assert r.returncode == 0, r.stderr
    assert_consistent(d, {"2.0.0"})


def test_a_disk_filling_up_mid_download_fails_the_job_in_one_line_and_it_resumes_once_space_is_freed(
        fleet: Fleet, small_disk: Path) -> None:
    d = device_on(fleet, small_disk, "full-mid-file")
    fleet.server.assign("llm@2.0.0", tag=d.tag)
    partial = d.store.partial(fleet.weights_blob())
    prefix = f"/repo/blobs/sha256/{fleet.weights_blob().hex}"
    with DripProxy(fleet.server.settings.port, prefix=prefix, step=64 * 1024, every_s=0.05) as proxy:
        d.via = proxy.url
        proc = subprocess.Popen(d.command("--once", "--keep-free", "1MiB"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not (partial.exists() and partial.stat().st_size >= MiB // 2) and time.monotonic() < deadline:
            time.sleep(0.01)
        filler = fill(small_disk, leave=0)  # something else on the device takes every free block
        _, err = proc.communicate(timeout=90)
    assert proc.returncode == 1 and "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "ran out of space" in errors[0], err
    assert d.version() == "1.0.0" and d.store.is_complete(d.store.link(CURRENT))
    assert "ran out of space" in read_status(d.data)["last_error"]
    had = partial.stat().st_size
    assert 0 < had < WEIGHTS
    filler.unlink()
    d.via = None
    r = d.run("--keep-free", "1MiB")
    assert r.returncode == 0, r.stderr
    assert f"at byte {had} of {WEIGHTS}" in r.stderr
    failed = [e for e in fleet.server.events(d.device_id) if e["state"] == "failed"]
    assert len(failed) == 1 and "ran out of space" in failed[0]["data"]["reason"]
    assert_consistent(d, {"2.0.0"})
