"""`edgeship runtime serve` as a real process."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from edgeship.cli.main import run

from .conftest import Models, standard_release
from .harness import PROMPT, Device


def test_serve_answers_and_stops_cleanly(device: Device, models: Models) -> None:
    release_id = standard_release(device, models)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    edgeship = Path(sys.executable).with_name("edgeship")
    proc = subprocess.Popen([str(edgeship), "runtime", "serve", "--data-dir", str(device.root), "--port", str(port),
                             "--threads", "1", "--ctx", "256"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.1)
        assert httpx.post(f"{url}/v1/completions", json=PROMPT).json()["system_fingerprint"] == release_id
    finally:
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells it.
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    assert proc.stdout is not None and "Application shutdown complete" in proc.stdout.read().decode()


@pytest.mark.parametrize("flags, message", [
    (["--memory-budget", "lots"], "size 'lots' not understood"),
    (["--max-body", "-1"], "size '-1' not understood"),
    (["--profile", "toaster"], "unknown profile: toaster"),
    (["--profile", "pi5-8gb", "--memory-budget", "1GiB"], "not both"),
])
@pytest.mark.timeout(60)  # a flag that slipped through would start serving for good
def test_bad_flags_exit_2(tmp_path: Path, flags: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert run(["runtime", "serve", "--data-dir", str(tmp_path), *flags]) == 2
    assert message in capsys.readouterr().err.replace("\n", "")
