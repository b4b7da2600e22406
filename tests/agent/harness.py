"""A real update server in its own process and real agent processes, for end-to-end and fault tests."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from edgeship.agent.store import CURRENT, PREVIOUS, DeviceStore
from edgeship.loopback import free_port
from edgeship.release.bundle import ComponentSpec, build_release
from edgeship.release.manifest import MEDIA_TYPES, Component, ComponentKind, HealthSuite, Manifest
from edgeship.server.bootstrap import init_data_dir
from edgeship.server.settings import ServerSettings
from edgeship.workspace import Workspace

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Releases:
    """Publishes releases of one name into a real workspace, as an operator would."""

    ws: Workspace
    model: Path
    src: Path
    name: str = "llm"

    def publish(self, version: str, *, health: HealthSuite | None = None, model: Path | None = None,
                broken_model: bool = False, big: Path | None = None, deltas: bool = False,
                chat_template: str | None = None, extra: tuple[ComponentSpec, ...] = ()) -> Manifest:
        """A release of the tiny GGUF model (shared between versions), a per-version config and ``extra``.

        ``broken_model`` ships garbage labelled as GGUF, which only a device trial catches;
        ``chat_template`` is signed into the model's meta, as `release push --chat-template` does.
        """
        d = self.src / version
        d.mkdir(parents=True, exist_ok=True)
        config = d / "config.json"
        config.write_text(json.dumps({"version": version}))
        specs = [ComponentSpec(ComponentKind.GGUF, model or self.model, "model"), ComponentSpec(ComponentKind.CONFIG, config, "config")]
        if big is not None:
            specs.append(ComponentSpec(ComponentKind.FILE, big, "weights"))
        specs += extra
        manifest = build_release(self.name, version, specs, self.ws.store, health=health,
                                 chat_templates={"model": chat_template} if chat_template is not None else None)
        if broken_model:
            bad = d / "model.gguf"
            bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 64)
            digest, size = self.ws.store.put_file(bad)
            model_c = Component(name="model", kind=ComponentKind.GGUF, path="model.gguf", digest=str(digest), size=size,
                                media_type=MEDIA_TYPES[ComponentKind.GGUF])
            manifest = manifest.model_copy(update={"components": (model_c, *manifest.components[1:])})
        # Deltas (from the previous version, as `release push` signs them) only where a test
        # asks, so the full-file paths stay tested too.
        self.ws.publish(manifest, delta_history=1 if deltas else 0)
        return manifest

    def root(self) -> Path:
        return self.ws.repo_dir / "metadata" / "1.root.json"


@dataclass
class Server:
    """The real edgeship server (``create_app``) under uvicorn, behind `tests.agent.faults`."""

    settings: ServerSettings
    admin_token: str
    proc: subprocess.Popen | None = None

    @classmethod
    def create(cls, ws: Workspace, data_dir: Path, *, poll_interval_s: int = 1) -> Server:
        settings = ServerSettings(data_dir=data_dir, port=free_port(), access_log=False, log_level="warning",
                                  poll_interval_s=poll_interval_s)
        cred = init_data_dir(settings, ws)
        return cls(settings, cred.token)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    def start(self, faults: str = "") -> None:
        env = {**os.environ, **self.settings.to_env(), "EDGESHIP_TEST_FAULTS": faults}
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.agent.serve"], cwd=REPO_ROOT, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("the server did not come up within 30 s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()  # as hard as a crash: no graceful close of open downloads
            self.proc.wait()
            self.proc = None

    def restart(self, faults: str = "") -> None:
        self.stop()
        self.start(faults)

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        r = httpx.request(method, self.url + path, json=body, headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=30)
        r.raise_for_status()
        return r.json()

    def enroll_token(self, tags: dict[str, str]) -> str:
        return self.admin("POST", "/v1/admin/enroll-tokens", {"tags": tags})["token"]

    def assign(self, release: str, *, tag: str, rollback: bool = False) -> None:
        self.admin("POST", "/v1/admin/assignments", {"release": release, "tag": tag, "rollback": rollback})

    def events(self, device_id: str) -> list[dict[str, Any]]:
        out, after = [], 0
        while True:
            page = self.admin("GET", f"/v1/admin/events?device_id={device_id}&after={after}&limit=500")
            out += page["events"]
            if not page["events"]:
                return out
            after = page["next_after"]


@dataclass
class Device:
    """One device: a data dir and `edgeship agent run` processes started on it."""

    server: Server
    data: Path
    root: Path
    tag: str
    token: str = ""
    env: dict[str, str] = field(default_factory=dict)
    via: str | None = None  # a proxy's URL in front of the server

    @property
    def store(self) -> DeviceStore:
        return DeviceStore(self.data)

    @property
    def device_id(self) -> str:
        return json.loads((self.data / "identity.json").read_text())["device_id"]

    def command(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "edgeship.agent", "run", "--data-dir", str(self.data), "--server", self.via or self.server.url,
                "--root", str(self.root), "--enroll-token", self.token, "--tag", self.tag, "-v", *extra]

    def run(self, *extra: str, crash_at: str | None = None, fsize_limit: int | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``agent run --once``; ``crash_at`` sets the SIGKILL hook, ``fsize_limit`` RLIMIT_FSIZE."""
        env = {**os.environ, **self.env}
        env.pop("EDGESHIP_AGENT_CRASH_AT", None)
        if crash_at:
            env["EDGESHIP_AGENT_CRASH_AT"] = crash_at
        preexec: Callable[[], None] | None = None
        if fsize_limit is not None:
            def preexec() -> None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, fsize_limit))
        return subprocess.run(self.command("--once", *extra), env=env, text=True, capture_output=True, timeout=timeout,
                              preexec_fn=preexec, cwd=REPO_ROOT)

    def version(self, link: str = CURRENT) -> str | None:
        d = self.store.describe(self.store.link(link))
        return d["version"] if d else None

    def clone(self, data: Path) -> Device:
        """The same device (identity included) in another dir, hard links kept (`cp -a`)."""
        subprocess.run(["cp", "-a", str(self.data), str(data)], check=True)
        return Device(self.server, data, self.root, self.tag, self.token)


def assert_consistent(device: Device, allowed: set[str | None]) -> None:
    """The device runs a complete release from ``allowed``, fsck is clean, no event repeats."""
    store = device.store
    cur = store.link(CURRENT)
    assert device.version() in allowed, f"device runs {device.version()}, expected one of {allowed}"
    if cur is not None:
        assert store.is_complete(cur)
    prev = store.link(PREVIOUS)
    if prev is not None:
        assert store.is_complete(prev)
    report = store.fsck()
    assert report.clean, report.problems


def no_duplicate_steps(events: list[dict[str, Any]]) -> None:
    """Each (job, step, round) is reported once: a step re-run after a crash re-sends the same ID."""
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids))
    keys = [(e["data"].get("job"), e["state"], e["id"]) for e in events if e["type"] == "state"]
    per_step: dict[tuple[Any, Any], int] = {}
    for job, state, _ in keys:
        per_step[(job, state)] = per_step.get((job, state), 0) + 1
    # Only a re-run trial (a new round after a crash) or a verify retry may report a step twice.
    repeats = {k: n for k, n in per_step.items() if n > 1 and k[1] not in ("trial", "downloading", "verifying")}
    assert not repeats, repeats
