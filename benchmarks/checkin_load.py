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
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from edgeship.loopback import CLI, free_port

WRK_SCRIPT = r"""
local devices = {}
local threads = {}
local counter = 0
-- Globals, not locals: done() reads them from each thread with thread:get().
checkins, event_posts, bad = 0, 0, 0
local share = tonumber(os.getenv("EVENT_SHARE") or "0.1")
local last_kind = "checkin"

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(os.getenv("DEVICES_FILE")) do
    local id, secret = line:match("(%S+) (%S+)")
    table.insert(devices, {id, "Bearer " .. id .. "." .. secret})
  end
  math.randomseed(os.time() + tid * 7919)
end

local checkin_body = '{"state":"committed","current":{"name":"app","version":"1.0.0","release_id":null}}'

function request()
  local d = devices[math.random(#devices)]
  local headers = {["Authorization"] = d[2], ["Content-Type"] = "application/json"}
  if math.random() < share then
    last_kind = "events"
    local evs = {}
    for i = 1, 5 do
      counter = counter + 1
      evs[i] = string.format('{"id":"w%d-%d-%d","time":"2026-01-01T00:00:00Z","type":"metrics","data":{"tok_s":12.5}}', tid, os.time(), counter)
    end
    return wrk.format("POST", "/v1/devices/" .. d[1] .. "/events", headers, '{"events":[' .. table.concat(evs, ",") .. ']}')
  end
  last_kind = "checkin"
  return wrk.format("POST", "/v1/devices/" .. d[1] .. "/checkin", headers, checkin_body)
end

function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
  if last_kind == "checkin" then checkins = checkins + 1 else event_posts = event_posts + 1 end
end

function done(summary, latency, requests)
  local c, e, b = 0, 0, 0
  for _, t in ipairs(threads) do
    c = c + t:get("checkins"); e = e + t:get("event_posts"); b = b + t:get("bad")
  end
  io.write(string.format('RESULT {"requests":%d,"checkins":%d,"event_posts":%d,"bad":%d,"errors":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"duration_us":%d}\n',
    summary.requests, c, e, b, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, summary.duration))
end
"""


def cli(*args: str) -> None:
    subprocess.run([*CLI, *args], check=True, stdout=subprocess.DEVNULL)


def tree(pid: int) -> list[int]:
    """A process and all its descendants."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return found


def tree_usage(pid: int) -> tuple[int, float]:
    """Resident memory (bytes) and CPU used so far (seconds) by a process tree."""
    rss, ticks = 0, 0
    for p in tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
            stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue  # exited meanwhile
        rss += next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        ticks += int(stat[11]) + int(stat[12])  # utime + stime
    return rss, ticks / os.sysconf("SC_CLK_TCK")


async def enroll(url: str, token: str, n: int, concurrency: int = 32) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    queue = iter(range(n))

    async def worker(client: httpx.AsyncClient) -> None:
        for i in queue:
            facts = {"arch": "aarch64", "ram": 4 << 30, "hostname": f"bench-{i}", "timezone": "UTC"}
            for attempt in range(3):
                try:
                    r = await client.post("/v1/devices/enroll", json={"token": token, "facts": facts})
                    break
                except (httpx.ReadError, httpx.RemoteProtocolError):
                    # A keep-alive connection the server closed just as it was reused; the
                    # benchmark's token has unlimited uses, so enrolling again is harmless.
                    if attempt == 2:
                        raise
            r.raise_for_status()
            out.append((r.json()["device_id"], r.json()["secret"]))

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return out


def postgres_schema(base: str) -> tuple[str, str]:
    from sqlalchemy import create_engine, text

    schema = f"bench_{secrets.token_hex(4)}"
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    return f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}", schema


def drop_schema(base: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def run_backend(backend: str, args: argparse.Namespace, work: Path) -> dict:
    work.mkdir(parents=True)
    ws = work / "ws"
    (work / "config.json").write_text('{"threshold": 0.5}')
    cli("init", str(ws), "--no-encrypt")
    cli("release", "push", "app", "-v", "1.0.0", "-c", f"config={work / 'config.json'}", "-w", str(ws))
    database_url, schema = "", None
    if backend == "postgresql":
        database_url, schema = postgres_schema(args.database_url)
    data = work / "data"
    cli("server", "init", "--data-dir", str(data), "--database-url", database_url, "-w", str(ws))
    import tomllib

    admin = tomllib.loads((ws / "edgeship.toml").read_text())["server"]["admin_token"]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(work / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    server = subprocess.Popen(
        [*CLI, "server", "--data-dir", str(data), "--port", str(port), "--workers", str(args.workers), "--no-access-log",
         "--log-level", "warning", *(["--database-url", database_url] if database_url else [])],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"server did not start; see {work / 'server.log'}")
            time.sleep(0.2)
        headers = {"authorization": f"Bearer {admin}"}
        token = httpx.post(f"{url}/v1/admin/enroll-tokens", json={"tags": {"fleet": "bench"}}, headers=headers).json()["token"]
        httpx.post(f"{url}/v1/admin/assignments", json={"release": "app@1.0.0", "tag": "fleet=bench"}, headers=headers).raise_for_status()
        started = time.monotonic()
        devices = asyncio.run(enroll(url, token, args.devices))
        enroll_s = time.monotonic() - started
        devices_file = work / "devices.txt"
        devices_file.write_text("".join(f"{i} {s}\n" for i, s in devices))
        (work / "load.lua").write_text(WRK_SCRIPT)
        env = {**os.environ, "DEVICES_FILE": str(devices_file), "EVENT_SHARE": str(args.event_share)}
        cpu_before = tree_usage(server.pid)[1]
        wrk = subprocess.run(
            ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--timeout", "5s", "-s", str(work / "load.lua"), url],
            capture_output=True, text=True, env=env, check=False,
        )
        rss, cpu_after = tree_usage(server.pid)
        cpu = cpu_after - cpu_before
        line = next((x for x in wrk.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None or wrk.returncode != 0:
            raise SystemExit(f"wrk printed no result:\n{wrk.stdout}\n{wrk.stderr}")
        r = json.loads(line[7:])
        seconds = r["duration_us"] / 1e6
        return {
            "backend": backend,
            "workers": args.workers,
            "devices": len(devices),
            "enroll_per_s": round(len(devices) / enroll_s),
            "checkins_per_s": round(r["checkins"] / seconds),
            "requests_per_s": round(r["requests"] / seconds),
            "event_posts_per_s": round(r["event_posts"] / seconds),
            "p50_ms": r["p50_us"] / 1000,
            "p90_ms": r["p90_us"] / 1000,
            "p99_ms": r["p99_us"] / 1000,
            "max_ms": r["max_us"] / 1000,
            "non_200": r["bad"],
            "socket_errors": r["errors"],
            "server_rss_mib": round(rss / 2**20, 1),
            "server_cpu_ms_per_request": round(cpu * 1000 / max(r["requests"], 1), 3),
            "load_average": os.getloadavg()[0],
        }
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
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
