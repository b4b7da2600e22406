"""Check-in load on a real server: 10,000 enrolled devices, then check-ins and event posts.

    .venv/bin/python benchmarks/checkin_load.py [--backend sqlite|postgresql|both] [--workers 2]
        [--devices 10000] [--duration 20] [--connections 32] [--event-share 0.1]
        [--baseline 29f82e4] [--out result.json]

Each backend is measured twice in the same run: first the server of ``--baseline`` (a git
commit: its ``src/`` is extracted to a temporary directory and put first on the server's
PYTHONPATH; the default is the commit before the check-in fast path), then this tree's; the
ratio between the two is printed. ``--baseline ''`` measures this tree only.

Starts ``edgeship server`` (uvicorn, N workers, no access log) on a free loopback port over a
fresh SQLite file or a fresh PostgreSQL schema (``--database-url`` or
$EDGESHIP_TEST_DATABASE_URL), enrolls the devices through the real API, then drives it with
``wrk`` (Debian package ``wrk``) for a fixed time: each request is a check-in, or with
probability ``--event-share`` a batch of 5 new events, from a random device. Prints
check-ins/s, p50/p99 latency over all requests, errors, the server's RSS (all processes) and
CPU per request of the server and (PostgreSQL) of the database backends serving it.
``--out`` writes the results as JSON: ``benchmarks/capacity.py`` recomputes the capacity
model's check-in rows from it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.checkins import (
    add_fleet_options,
    chosen_backends,
    drop_schema,
    enroll_fleet,
    postgres_schema,
    prepare,
    run_wrk,
    start_server,
    write_devices,
)
from benchmarks.procstat import tree_usage
from benchmarks.scale import BackendCpu
from edgeship.loopback import Processes

REPO = Path(__file__).resolve().parents[1]
APP_NAME = "edgeship-checkin-load"
# The last commit before the check-in fast path (group commit, dependency-free route).
BEFORE_FAST_PATH = "29f82e4"


def extract_baseline(ref: str, into: Path) -> Path:
    """The ``src/`` directory of commit ``ref`` of this repository, extracted under ``into``."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "src"], capture_output=True)
    if archive.returncode != 0:
        raise SystemExit(f"cannot extract --baseline {ref}: {archive.stderr.decode().strip()} (it must be a commit of this git checkout)")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "src"


def run_backend(backend: str, args: argparse.Namespace, work: Path, src: Path | None) -> dict:
    """One server (``src`` first on its path, else this tree's), one fresh database, one load."""
    database_url, schema = postgres_schema(args.database_url, APP_NAME) if backend == "postgresql" else ("", None)
    setup = prepare(work, database_url, src)
    procs = Processes()
    try:
        server, url = start_server(procs, setup, workers=args.workers, env={"PYTHONPATH": str(src or REPO / "src")})
        started = time.monotonic()
        devices = enroll_fleet(url, setup.admin_token, args.devices)
        enroll_s = time.monotonic() - started
        devices_file = write_devices(work / "devices.txt", devices)
        cpu_before = tree_usage(server.pid)[1]
        with BackendCpu(args.database_url, APP_NAME) if schema else contextlib.nullcontext() as pg:
            r = run_wrk([url], devices_file, connections=args.connections, duration=args.duration, threads=args.threads,
                        event_share=args.event_share)
        rss, cpu_after = tree_usage(server.pid)
        return {
            "backend": backend,
            "server": f"baseline {args.baseline}" if src else "this tree",
            "event_share": args.event_share,
            "connections": args.connections,
            "workers": args.workers,
            "devices": len(devices),
            "enroll_per_s": round(len(devices) / enroll_s),
            **{k: r[k] for k in ("checkins_per_s", "requests_per_s", "event_posts_per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms")},
            "non_200": r["non_200"],
            "socket_errors": r["socket_errors"],
            "server_rss_mib": round(rss / 2**20, 1),
            "server_cpu_ms_per_request": round((cpu_after - cpu_before) * 1000 / max(r["requests"], 1), 3),
            "postgres_cpu_ms_per_request": round(pg.cpu_s * 1000 / max(r["requests"], 1), 3) if pg else None,
            "load_average": os.getloadavg()[0],
        }
    finally:
        procs.close()
        if schema:
            drop_schema(args.database_url, schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_fleet_options(parser)
    parser.add_argument("--duration", type=int, default=20, help="seconds of load")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (the bound on in-flight requests)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--event-share", type=float, default=0.1, help="share of requests that post a batch of 5 events")
    parser.add_argument("--baseline", default=BEFORE_FAST_PATH, help="git commit whose server is measured first ('' for none)")
    parser.add_argument("--out", type=Path, help="write every result to this JSON file")
    parser.add_argument("--json", action="store_true", help="print one JSON object per run")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("this benchmark drives load with wrk: apt-get install wrk")
    chosen = chosen_backends(args)
    results = []
    with tempfile.TemporaryDirectory(prefix="edgeship-bench-") as tmp:
        baseline = extract_baseline(args.baseline, Path(tmp) / "baseline") if args.baseline else None
        for backend in chosen:
            before = None
            for src in ([baseline] if baseline else []) + [None]:
                result = run_backend(backend, args, Path(tmp) / f"{backend}-{'baseline' if src else 'tree'}", src)
                if before is not None:
                    result["vs_baseline"] = round(result["checkins_per_s"] / max(before["checkins_per_s"], 1), 2)
                before = result
                results.append(result)
                print(json.dumps(result) if args.json else report(result), flush=True)
    if args.out:
        # Not the database URL (it may carry a password) nor where the file went.
        kept = {k: v for k, v in vars(args).items() if k not in ("database_url", "out", "json")}
        args.out.write_text(json.dumps({"benchmark": "checkin_load", "args": kept, "runs": results}, indent=1) + "\n")


def report(r: dict) -> str:
    pg = f", PostgreSQL {r['postgres_cpu_ms_per_request']} ms" if r.get("postgres_cpu_ms_per_request") is not None else ""
    ratio = f"  (x{r['vs_baseline']:.2f} the baseline)" if "vs_baseline" in r else ""
    return (
        f"{r['backend']:<10} {r['server']}  workers={r['workers']} connections={r['connections']} devices={r['devices']} "
        f"(enrolled at {r['enroll_per_s']}/s)\n"
        f"  check-ins/s {r['checkins_per_s']}{ratio}  (+{r['event_posts_per_s']} event posts/s of 5 events)\n"
        f"  latency p50 {r['p50_ms']:.1f} ms  p90 {r['p90_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms  max {r['max_ms']:.1f} ms\n"
        f"  non-200 {r['non_200']}  socket errors {r['socket_errors']}  server RSS {r['server_rss_mib']} MiB\n"
        f"  CPU per request: server {r['server_cpu_ms_per_request']} ms{pg}  (load average {r['load_average']:.1f})"
    )


if __name__ == "__main__":
    main()
