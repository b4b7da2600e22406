"""The trial after a switch: every model component parses, then the release's health command.

Model files are parsed in a child process (``python -m edgeship.agent.trial DIR``): a
parser that crashes or balloons on a bad file then takes down the child, not the agent,
and the agent's own memory stays small. Both checks run under a timeout; a hung check
is killed with its whole process group and counts as a failure.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeship.errors import RuntimeBackendError, ValidationError
from edgeship.release.inspect import inspect_component
from edgeship.release.manifest import Manifest

MANIFEST = "manifest.json"
log = logging.getLogger("edgeship.agent")
_TAIL = 400  # characters of a failing command's output kept in the reason


@dataclass(frozen=True)
class TrialResult:
    ok: bool
    reason: str | None = None
    plans: dict[str, Any] | None = None  # the runtime's backend plan per model, when it loaded the release


def check_models(release_dir: Path) -> list[str]:
    """Problems found parsing each model component of an installed release (empty: all good)."""
    manifest = Manifest.from_bytes((release_dir / MANIFEST).read_bytes())
    problems = []
    for c in manifest.components:
        if c.kind.is_model:
            try:
                inspect_component(c.kind, release_dir / c.path)
            except ValidationError as exc:
                problems.append(f"{c.name}: {exc.message}")
    return problems


def _run(argv: list[str] | str, *, cwd: Path, timeout: float, shell: bool = False) -> tuple[int | None, str]:
    """Run a command in its own process group; (exit code or None on timeout, output tail)."""
    env = {**os.environ, "EDGESHIP_RELEASE_DIR": str(cwd)}
    proc = subprocess.Popen(argv, cwd=cwd, shell=shell, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # The command may have started children of its own: kill the whole group.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, ""
    return proc.returncode, out.decode(errors="replace")[-_TAIL:].strip()


def run_trial(release_dir: Path, *, parse_timeout_s: float) -> TrialResult:
    """Run the whole health suite of the release installed at ``release_dir``."""
    manifest = Manifest.from_bytes((release_dir / MANIFEST).read_bytes())
    code, out = _run([sys.executable, "-m", "edgeship.agent.trial", str(release_dir)], cwd=release_dir, timeout=parse_timeout_s)
    if code is None:
        return TrialResult(False, f"parsing the model files took longer than {parse_timeout_s:g}s")
    if code != 0:
        return TrialResult(False, f"model check failed: {out or f'exit code {code}'}")
    command = manifest.health.command
    if command:
        timeout = manifest.health.timeout_s
        code, out = _run(command, cwd=release_dir, timeout=timeout, shell=True)
        if code is None:
            return TrialResult(False, f"health command {command!r} did not finish within {timeout:g}s")
        if code != 0:
            return TrialResult(False, f"health command {command!r} exited {code}: {out}")
    return TrialResult(True)


def runtime_trial(url: str, data_dir: Path, manifest: Manifest, release_id: str) -> TrialResult:
    """Serve the new release in the device's runtime and run its inference checks there.

    Models whose accelerator failed a check are reloaded on the CPU and the suite runs once
    more: if it passes, the trial goes on with the CPU plan (the plans say why).
    """
    # Only devices with a runtime pay for these imports.
    from edgeship.runtime.client import RuntimeClient
    from edgeship.runtime.plan import BackendPlan, cpu_fallback

    try:
        with RuntimeClient(data_dir, url) as runtime:
            plans = runtime.swap(release_id, cpu={}).plans  # {}: a new trial tries the accelerators again
            if not manifest.health.inference_checks():
                return TrialResult(True, plans=plans)
            verdict = runtime.trial(manifest, release_id)
            moves = cpu_fallback({n: BackendPlan.from_json(p) for n, p in plans.items()}, verdict.by_component)
            if moves:
                log.warning("%s: %s; trying again on the CPU", manifest.ref,
                            "; ".join(f"{n}: {why}" for n, why in moves.items()))
                first = verdict
                plans = runtime.swap(release_id, cpu=moves).plans
                verdict = runtime.trial(manifest, release_id)
                if not verdict.ok:
                    return TrialResult(False, f"inference checks failed on the CPU too: {verdict.reason} "
                                              f"(on the accelerator: {first.reason})", plans)
    except RuntimeBackendError as exc:
        return TrialResult(False, f"runtime: {exc.message}")
    return TrialResult(verdict.ok, None if verdict.ok else f"inference checks failed: {verdict.reason}", plans)


def runtime_restore(url: str, data_dir: Path, release_id: str | None) -> None:
    """Point the runtime back at the restored release; if it cannot, it loads `current` when it restarts."""
    from edgeship.runtime.client import RuntimeClient

    try:
        with RuntimeClient(data_dir, url) as runtime:
            runtime.swap(release_id)
    except RuntimeBackendError as exc:
        log.warning("rolled back, but the runtime did not swap back: %s", exc.message)


def main(argv: list[str]) -> int:
    problems = check_models(Path(argv[0]))
    print(json.dumps(problems) if problems else "ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
