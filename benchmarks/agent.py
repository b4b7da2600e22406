"""Agent benchmark: idle cost of polling, and installing a big model with flat memory.

    .venv/bin/python benchmarks/agent.py [--size-mib 1024] [--small-mib 64] [--idle-s 60]
        [--poll-s 5] [--max-rate 100MB/s]

Runs the real server (as the agent's fault tests do, `tests/agent/harness.py`) on a free
loopback port and real `python -m edgeship.agent run` processes against it:

1. idle: an enrolled agent on an installed release checks in every ``--poll-s`` seconds for
   ``--idle-s``; prints its RSS and CPU share (from /proc);
2. install: a generated safetensors model of ``--small-mib`` and of ``--size-mib`` is
   downloaded, verified, staged, switched to and trialled (``--once``); prints wall time
   and the agent's own peak RSS (the trial's model parsing runs in a child process);
3. the same big install with the link capped at ``--max-rate``.

"Independent of size" means the two install peaks are about equal.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.procstat import cpu_s, status_kib  # noqa: E402
from edgeship.release.bundle import ComponentSpec, build_release  # noqa: E402
from edgeship.release.manifest import ComponentKind  # noqa: E402
from edgeship.units import parse_rate  # noqa: E402
from edgeship.workspace import Workspace  # noqa: E402
from tests.agent.harness import Device, Server  # noqa: E402

MIB = 1024 * 1024


def write_safetensors(path: Path, size: int) -> Path:
    """A valid safetensors file of ``size`` data bytes, written in 8 MiB pieces (never all in RAM)."""
    header = json.dumps({"weights": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header)
        for i in range(0, size, 8 * MIB):
            f.write(os.urandom(min(8 * MIB, size - i)))
    return path


def measure(cmd: list[str]) -> dict[str, float]:
    """Run ``cmd``; wall time and its own peak RSS.

    The peak is VmHWM, read every 50 ms until the process exits (it only grows, so the last
    reading misses at most the final 50 ms). Not ru_maxrss: a child's ru_maxrss starts at
    its parent's RSS at fork time, here the benchmark's own.
    """
    t = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = [0]

    def sample() -> None:
        while proc.returncode is None:
            try:
                peak[0] = max(peak[0], status_kib(proc.pid, "VmHWM"))
            except (FileNotFoundError, ProcessLookupError):
                return
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    proc.wait()
    wall = time.monotonic() - t
    if proc.returncode != 0:
        raise SystemExit(f"agent failed: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
    return {"wall_s": wall, "peak_mib": peak[0] / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--small-mib", type=int, default=64)
    ap.add_argument("--idle-s", type=float, default=60.0)
    ap.add_argument("--poll-s", type=int, default=5)
    ap.add_argument("--max-rate", default="100MB/s")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="edgeship-agent-bench-") as tmp_s:
        tmp = Path(tmp_s)
        ws = Workspace.init(tmp / "ws", passphrase=None)
        versions = {"1.0.0": args.small_mib, "2.0.0": args.size_mib, "3.0.0": args.size_mib}
        for version, mib in versions.items():
            model = write_safetensors(tmp / f"model-{version}.safetensors", mib * MIB)
            ws.publish(build_release("bench", version, [ComponentSpec(ComponentKind.SAFETENSORS, model, "model")], ws.store))
            model.unlink()
        server = Server.create(ws, tmp / "server", poll_interval_s=args.poll_s)
        server.start()
        try:
            dev = Device(server, tmp / "device", ws.repo_dir / "metadata" / "1.root.json", "bench=1", server.enroll_token({"bench": "1"}))
            server.assign("bench@1.0.0", tag=dev.tag)
            small = measure(dev.command("--once"))
            print(f"install {args.small_mib} MiB: {small['wall_s']:.1f} s, agent peak RSS {small['peak_mib']:.1f} MiB")

            proc = subprocess.Popen(dev.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(3)  # past start-up and the first check-in
            c0, t0 = cpu_s(proc.pid), time.monotonic()
            rss = []
            while time.monotonic() - t0 < args.idle_s:
                rss.append(status_kib(proc.pid, "VmRSS"))
                time.sleep(1)
            cpu = (cpu_s(proc.pid) - c0) / (time.monotonic() - t0) * 100
            proc.terminate()
            proc.wait()
            print(f"idle ({args.idle_s:.0f} s, check-in every {args.poll_s} s): RSS {max(rss) / 1024:.1f} MiB, CPU {cpu:.2f} %")

            server.assign("bench@2.0.0", tag=dev.tag)
            big = measure(dev.command("--once"))
            rate = args.size_mib * MIB / big["wall_s"] / 1e6
            print(f"install {args.size_mib} MiB: {big['wall_s']:.1f} s ({rate:.0f} MB/s end to end), "
                  f"agent peak RSS {big['peak_mib']:.1f} MiB")

            server.assign("bench@3.0.0", tag=dev.tag)
            capped = measure(dev.command("--once", "--max-rate", args.max_rate))
            rate = args.size_mib * MIB / capped["wall_s"] / 1e6
            print(f"install {args.size_mib} MiB capped at {args.max_rate} ({parse_rate(args.max_rate) / 1e6:.0f} MB/s): "
                  f"{capped['wall_s']:.1f} s ({rate:.0f} MB/s end to end), agent peak RSS {capped['peak_mib']:.1f} MiB")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
