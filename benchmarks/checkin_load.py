"""Check-in load on a real server: 10,000 enrolled devices, then check-ins and event posts.

    .venv/bin/python benchmarks/checkin_load.py [--backend sqlite|postgresql|both] [--workers 2]
        [--devices 10000] [--duration 20] [--connections 32] [--event-share 0.1]

Starts ``edgeship server`` (uvicorn, N workers, no access log) on a free loopback port over a
fresh SQLite file or a fresh PostgreSQL schema (``--database-url`` or
$EDGESHIP_TEST_DATABASE_URL), enrolls the devices through the real API, then drives it with
``wrk`` (Debian package ``wrk``) for a fixed time: each request is a check-in, or with
probability ``--event-share`` a batch of 5 new events, from a random device. Prints
check-ins/s, p50/p99 latency over all requests, errors and the server's RSS (all processes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.checkins import (
    drop_schema,
    enroll_fleet,
    postgres_schema,
    prepare,
    run_wrk,
    start_server,
    write_devices,
)
from benchmarks.procstat import tree_usage
from edgeship.loopback import Processes


def run_backend(backend: str, args: argparse.Namespace, work: Path) -> dict:
    database_url, schema = postgres_schema(args.database_url) if backend == "postgresql" else ("", None)
    setup = prepare(work, database_url)
    procs = Processes()
    try:
        server, url = start_server(procs, setup, workers=args.workers)
        started = time.monotonic()
        devices = enroll_fleet(url, setup.admin_token, args.devices)
        enroll_s = time.monotonic() - started
        devices_file = write_devices(work / "devices.txt", devices)
        cpu_before = tree_usage(server.pid)[1]
        r = run_wrk([url], devices_file, connections=args.connections, duration=args.duration, threads=args.threads,
                    event_share=args.event_share)
        rss, cpu_after = tree_usage(server.pid)
        return {
            "backend": backend,
            "workers": args.workers,
            "devices": len(devices),
            "enroll_per_s": round(len(devices) / enroll_s),
            **{k: r[k] for k in ("checkins_per_s", "requests_per_s", "event_posts_per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms")},
            "non_200": r["non_200"],
            "socket_errors": r["socket_errors"],
            "server_rss_mib": round(rss / 2**20, 1),
            "server_cpu_ms_per_request": round((cpu_after - cpu_before) * 1000 / max(r["requests"], 1), 3),
            "load_average": os.getloadavg()[0],
        }
    finally:
        procs.close()
        if schema:
            drop_schema(args.database_url, schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--database-url", default=os.environ.get("EDGESHIP_TEST_DATABASE_URL", ""), help="PostgreSQL base URL")
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=20, help="seconds of load")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (the bound on in-flight requests)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--event-share", type=float, default=0.1, help="share of requests that post a batch of 5 events")
    parser.add_argument("--json", action="store_true", help="print one JSON object per backend")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("this benchmark drives load with wrk: apt-get install wrk")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    if "postgresql" in backends and not args.database_url:
        raise SystemExit("PostgreSQL needs --database-url or EDGESHIP_TEST_DATABASE_URL")
    with tempfile.TemporaryDirectory(prefix="edgeship-bench-") as tmp:
        for backend in backends:
            result = run_backend(backend, args, Path(tmp) / backend)
            if args.json:
                print(json.dumps(result))
                continue
            print(
                f"{backend:<10} workers={result['workers']} devices={result['devices']} (enrolled at {result['enroll_per_s']}/s)\n"
                f"  check-ins/s {result['checkins_per_s']}  (+{result['event_posts_per_s']} event posts/s of 5 events)\n"
                f"  latency p50 {result['p50_ms']:.1f} ms  p90 {result['p90_ms']:.1f} ms  p99 {result['p99_ms']:.1f} ms  max {result['max_ms']:.1f} ms\n"
                f"  non-200 {result['non_200']}  socket errors {result['socket_errors']}  server RSS {result['server_rss_mib']} MiB\n"
                f"  server CPU {result['server_cpu_ms_per_request']} ms/request  (load average {result['load_average']:.1f})"
            )


if __name__ == "__main__":
    main()
