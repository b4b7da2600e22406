"""Rehearse a rollout with real agent processes against a real server, in real time.

The virtual fleet (``sim/virtual.py``) runs thousands of devices on a simulated clock;
this runs a few dozen real ``edgeship agent`` processes against a throwaway update server
on loopback. The devices install the previous release first, then the server's own
rollout job takes the new one out under the operator's plan, exactly as in the field.
Devices picked by ``release_bad_rate`` fail the new release's health command.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeship.client import OperatorClient
from edgeship.loopback import CLI, Processes, free_port, server_ready, wait_for
from edgeship.release.bundle import ComponentSpec, build_release
from edgeship.release.manifest import ComponentKind, HealthSuite
from edgeship.samples.llama import write_tiny_llama
from edgeship.server.bootstrap import init_data_dir
from edgeship.server.settings import ServerSettings
from edgeship.workspace import Workspace

NAME = "detector"
PREVIOUS, RELEASE = f"{NAME}@1.0.0", f"{NAME}@2.0.0"
BAD_ENV = "EDGESHIP_SIM_BAD"  # set to 1 on the devices where the new release misbehaves


@dataclass
class AgentRun:
    """What happened: a snapshot of the rollout at each change, and where every device ended."""

    timeline: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str | None] = field(default_factory=dict)  # device ID → version it runs
    pilot_devices: list[str] = field(default_factory=list)


def _publish(ws: Workspace, model: Path, version: str, health: HealthSuite | None) -> None:
    ws.publish(build_release(NAME, version, [ComponentSpec(ComponentKind.GGUF, model, "model")], ws.store, health=health))


def rehearse(
    devices: int,
    plan: dict[str, Any],
    out: Path,
    *,
    release_bad_rate: float = 0.0,
    pilot: int = 1,
    seed: int = 0,
    timeout: float = 600.0,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> AgentRun:
    """Run ``devices`` agents (the first ``pilot`` tagged ring=pilot) through a rollout of the
    new release under ``plan`` (``RolloutCreate`` fields: stages, bake, max_failure, …)."""
    out.mkdir(parents=True, exist_ok=True)
    ws = Workspace.init(out / "workspace", passphrase=None)
    model = write_tiny_llama(out / "model.gguf")
    _publish(ws, model, "1.0.0", None)
    _publish(ws, model, "2.0.0", HealthSuite(command=f'test "${BAD_ENV}" != 1', timeout_s=30))
    settings = ServerSettings(data_dir=out / "server", port=free_port(), poll_interval_s=1, rollout_check_s=0.5,
                              access_log=False, log_level="warning")
    token = init_data_dir(settings, ws).token
    url = f"http://127.0.0.1:{settings.port}"
    rng = random.Random(seed)
    run = AgentRun()
    with ExitStack() as stack:
        procs = Processes()
        stack.callback(procs.close)
        procs.spawn([*CLI, "server"], out / "server.log", settings.to_env())
        wait_for("the server", lambda: server_ready(url), 30, out)
        client = stack.enter_context(OperatorClient(url, token))
        root = ws.repo_dir / "metadata" / "1.root.json"
        for i in range(devices):
            enroll = client.create_enroll_token({"ring": "pilot"} if i < pilot else {}, 1, None)["token"]
            bad = rng.random() < release_bad_rate
            data = out / f"device-{i:03d}"
            procs.spawn([sys.executable, "-m", "edgeship.agent", "run", "--data-dir", str(data), "--server", url,
                         "--root", str(root), "--enroll-token", enroll], data.with_suffix(".log"), {BAD_ENV: "1" if bad else "0"})
        wait_for("every agent to enroll", lambda: len(list(client.devices())) == devices, 60, out)
        first = client.start_rollout(release=PREVIOUS, pilot="", stages="100", bake="0")
        wait_for(f"every device to install {PREVIOUS}", lambda: client.rollout(first["id"])["status"] == "completed", timeout, out)
        rollout = client.start_rollout(release=RELEASE, **plan)
        deadline = time.monotonic() + timeout
        while True:
            if not run.timeline or _summary(rollout) != _summary(run.timeline[-1]):
                run.timeline.append(rollout)
                if progress:
                    progress(rollout)
            if _settled(rollout) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
            rollout = client.rollout(rollout["id"])
        run.final = rollout
        listed = list(client.devices())
        run.versions = {d["id"]: (d["current"] or {}).get("version") for d in listed}
        run.pilot_devices = [d["id"] for d in listed if d["tags"].get("ring") == "pilot"]
    return run


def _settled(rollout: dict[str, Any]) -> bool:
    in_flight = sum(s["in_progress"] for s in rollout["stages"])
    if rollout["status"] == "aborted":
        return rollout["rollback_remaining"] == 0 and not in_flight
    return rollout["status"] in ("completed", "paused") and not in_flight


def _summary(rollout: dict[str, Any]) -> tuple[Any, ...]:
    return rollout["status"], rollout["phase"], tuple((s["done"], s["failed"], s["in_progress"]) for s in rollout["stages"])
