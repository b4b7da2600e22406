"""A real server, real agent processes running continuously, and a webhook receiver on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from edgeship.cli.main import run
from edgeship.release.manifest import HealthSuite
from edgeship.samples.llama import write_tiny_llama
from edgeship.workspace import Workspace
from tests.agent.harness import REPO_ROOT, Device, Releases, Server


@dataclass
class Receiver:
    """A tiny HTTP endpoint that records each POST; the first ``fail_first`` get a 500."""

    fail_first: int = 0
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    attempts: int = 0

    def start(self) -> str:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.attempts += 1
                if receiver.attempts <= receiver.fail_first:
                    self.send_response(500)
                else:
                    receiver.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.http.server_port}/hook"

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()

    def payloads(self, secret: str) -> list[dict[str, Any]]:
        """Bodies whose signature checks out under ``secret`` (others would fail the test's count)."""
        good = []
        for headers, body in self.posts:
            expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            if hmac.compare_digest(headers.get("x-edgeship-signature", ""), expected):
                good.append(json.loads(body))
        return good


@dataclass
class Lab:
    """Releases llm@1.0.0 … 4.0.0 on a real server, and agents that run until the test ends."""

    server: Server
    releases: Releases
    tmp: Path
    agents: dict[str, Device] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def cli(self, *args: str) -> int:
        return run([*args, "--server", self.server.url, "--token", self.server.admin_token])

    def cli_json(self, capsys: pytest.CaptureFixture[str], *args: str) -> Any:
        capsys.readouterr()
        code = self.cli(*args, "--json")
        out = capsys.readouterr().out
        assert code == 0, out
        return json.loads(out)

    def start_agent(self, name: str, tags: dict[str, str], env: dict[str, str] | None = None) -> Device:
        token = self.server.enroll_token({"dev": name, **tags})
        device = Device(self.server, self.tmp / name, self.releases.root(), f"dev={name}", token, env or {})
        with open(self.tmp / f"{name}.log", "wb") as log:  # the child keeps its own descriptor
            self.procs[name] = subprocess.Popen(device.command(), env={**os.environ, **device.env}, stdout=log,
                                                stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        self.agents[name] = device
        return device

    def wait(self, what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                logs = {n: (self.tmp / f"{n}.log").read_text()[-800:] for n in self.agents}
                raise AssertionError(f"timed out waiting for {what}; agent logs: {logs}")
            time.sleep(0.3)

    def versions(self) -> dict[str, str | None]:
        return {name: d.version() for name, d in self.agents.items()}

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            proc.wait(10)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("rollouts")
    ws = Workspace.init(tmp / "ws", passphrase=None)
    releases = Releases(ws, write_tiny_llama(tmp / "model.gguf"), tmp / "src")
    releases.publish("1.0.0")
    # Fails its trial only on devices started with SICK=1: a release that breaks part of a fleet.
    releases.publish("2.0.0", health=HealthSuite(command='test "$SICK" != 1', timeout_s=30))
    releases.publish("3.0.0", health=HealthSuite(command="echo sick >&2; exit 3", timeout_s=30))
    releases.publish("4.0.0")
    server = Server.create(ws, tmp / "server")
    server.settings = server.settings.model_copy(update={"rollout_check_s": 0.3, "webhook_retry_s": 0.2})
    server.start()
    lab = Lab(server, releases, tmp)
    try:
        yield lab
    finally:
        lab.stop()
        server.stop()
