"""Check-in load on real servers, shared by ``checkin_load.py`` and ``scale.py``: a workspace with
one release, a server data dir, devices enrolled through the API, and ``wrk`` (Debian package
``wrk``) driving check-ins and event posts from random devices."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import resource
import secrets
import subprocess
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from edgeship.loopback import CLI, Processes, free_port, server_ready, wait_for

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

def cli(*args: str | Path, src: Path | None = None) -> None:
    """An edgeship command, its output dropped: in this process (no second start-up of the
    CLI), or with ``src`` (another commit's sources, see checkin_load.py) in a subprocess."""
    argv = [str(a) for a in args]
    if src is not None:
        done = subprocess.run([*CLI, *argv], env={**os.environ, "PYTHONPATH": str(src)}, capture_output=True, text=True)
        code = done.returncode
    else:
        from edgeship.cli.main import run

        with contextlib.redirect_stdout(io.StringIO()):
            code = run(argv)
    if code != 0:
        raise SystemExit(f"`edgeship {' '.join(argv)}` failed with exit code {code}")


def add_fleet_options(parser: argparse.ArgumentParser) -> None:
    """The options of a check-in benchmark's databases and fleet (``chosen_backends`` reads them)."""
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--database-url", default=os.environ.get("EDGESHIP_TEST_DATABASE_URL", ""), help="PostgreSQL base URL")
    parser.add_argument("--devices", type=int, default=10_000)


def chosen_backends(args: argparse.Namespace) -> list[str]:
    """The databases ``--backend`` names, or exit saying what PostgreSQL lacks."""
    chosen = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    if "postgresql" in chosen and not args.database_url:
        raise SystemExit("PostgreSQL needs --database-url or $EDGESHIP_TEST_DATABASE_URL")
    return chosen


def postgres_schema(base: str, application_name: str = "") -> tuple[str, str]:
    """A URL whose connections use a new schema (and carry ``application_name``, so that their
    backends can be found in pg_stat_activity), and the schema's name."""
    from sqlalchemy import create_engine, text

    schema = f"bench_{secrets.token_hex(4)}"
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    return (f"{url}&application_name={application_name}" if application_name else url), schema


def drop_schema(base: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def postgres_backends(base: str, application_name: str) -> list[int]:
    """Process IDs of the PostgreSQL backends serving connections named ``application_name``."""
    from sqlalchemy import create_engine, text

    engine = create_engine(base)
    with engine.connect() as conn:
        pids = [int(p) for p in conn.execute(text("SELECT pid FROM pg_stat_activity WHERE application_name = :n"), {"n": application_name}).scalars()]
    engine.dispose()
    return pids


@dataclass
class Setup:
    """A workspace with app@1.0.0 and a server data dir initialised from it."""

    work: Path
    workspace: Path
    data: Path
    admin_token: str
    database_url: str


def prepare(work: Path, database_url: str = "", src: Path | None = None) -> Setup:
    """The workspace and data dir, made by this tree's CLI or by ``src``'s: a server runs on a
    database its own code migrated (a newer tree's migrations are unknown to an older server)."""
    work.mkdir(parents=True, exist_ok=True)
    ws = work / "ws"
    (work / "config.json").write_text('{"threshold": 0.5}')
    cli("init", ws, "--no-encrypt", src=src)
    cli("release", "push", "app", "-v", "1.0.0", "-c", f"config={work / 'config.json'}", "-w", ws, src=src)
    data = work / "data"
    cli("server", "init", "--data-dir", data, "--database-url", database_url, "-w", ws, src=src)
    admin = tomllib.loads((ws / "edgeship.toml").read_text())["server"]["admin_token"]
    return Setup(work, ws, data, admin, database_url)


def start_server(procs: Processes, setup: Setup, *, workers: int = 1, extra: Sequence[str] = (),
                 env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """``edgeship server`` on a free port over the setup's data dir and database; waits for /readyz."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [*CLI, "server", "--data-dir", str(setup.data), "--port", str(port), "--workers", str(workers), "--no-access-log",
            "--log-level", "warning", *(["--database-url", setup.database_url] if setup.database_url else []), *extra]
    log = setup.work / f"server-{port}.log"
    proc = procs.spawn(argv, log, env)
    wait_for(f"the server on port {port}", lambda: proc.poll() is not None or server_ready(url), 60, log)
    if proc.poll() is not None:
        raise SystemExit(f"server exited with {proc.returncode}; see {log}")
    return proc, url


async def enroll(url: str, token: str, n: int, concurrency: int = 32) -> list[tuple[str, str]]:
    """Enroll ``n`` devices with ``token``; their (id, secret) pairs."""
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


def enroll_fleet(url: str, admin_token: str, n: int, tags: dict[str, str] | None = None,
                 release: str | None = "app@1.0.0") -> list[tuple[str, str]]:
    """An unlimited enroll token for ``tags``, ``release`` assigned to them, ``n`` devices enrolled."""
    tags = tags or {"fleet": "bench"}
    headers = {"authorization": f"Bearer {admin_token}"}
    r = httpx.post(f"{url}/v1/admin/enroll-tokens", json={"tags": tags}, headers=headers)
    r.raise_for_status()
    if release:
        tag = ",".join(f"{k}={v}" for k, v in tags.items())
        httpx.post(f"{url}/v1/admin/assignments", json={"release": release, "tag": tag}, headers=headers).raise_for_status()
    return asyncio.run(enroll(url, r.json()["token"], n))


def write_devices(path: Path, devices: list[tuple[str, str]]) -> Path:
    path.write_text("".join(f"{i} {s}\n" for i, s in devices))
    return path


def run_wrk(urls: Sequence[str], devices_file: Path, *, connections: int, duration: float, threads: int = 1,
            event_share: float = 0.1) -> dict:
    """One ``wrk`` per URL at once, ``connections`` split between them; merged figures.

    p50 is the request-weighted mean of each wrk's p50 and p99 the worst wrk's p99 (wrk reports
    percentiles, not histograms, so they cannot be merged exactly; with one URL both are exact).
    ``wrk_cpu_s`` is the load generators' own CPU time.
    """
    script = devices_file.parent / "load.lua"
    script.write_text(WRK_SCRIPT)
    env = {**os.environ, "DEVICES_FILE": str(devices_file), "EVENT_SHARE": str(event_share)}
    per = [connections // len(urls) + (1 if i < connections % len(urls) else 0) for i in range(len(urls))]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    runs = [subprocess.Popen(["wrk", f"-t{min(threads, c)}", f"-c{c}", f"-d{duration:g}s", "--timeout", "5s", "-s", str(script), url],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for url, c in zip(urls, per, strict=True)]
    outputs = [r.communicate() for r in runs]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    results = []
    for run, (out, err) in zip(runs, outputs, strict=True):
        line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
        if line is None or run.returncode != 0:
            raise SystemExit(f"wrk printed no result:\n{out}\n{err}")
        results.append(json.loads(line[7:]))
    requests = sum(r["requests"] for r in results)
    seconds = max(r["duration_us"] for r in results) / 1e6
    return {
        "requests": requests,
        "checkins": sum(r["checkins"] for r in results),
        "event_posts": sum(r["event_posts"] for r in results),
        "seconds": seconds,
        "checkins_per_s": round(sum(r["checkins"] for r in results) / seconds),
        "requests_per_s": round(requests / seconds),
        "event_posts_per_s": round(sum(r["event_posts"] for r in results) / seconds),
        "p50_ms": sum(r["p50_us"] * r["requests"] for r in results) / max(requests, 1) / 1000,
        "p90_ms": max(r["p90_us"] for r in results) / 1000,
        "p99_ms": max(r["p99_us"] for r in results) / 1000,
        "max_ms": max(r["max_us"] for r in results) / 1000,
        "non_200": sum(r["bad"] for r in results),
        "socket_errors": sum(r["errors"] for r in results),
        "wrk_cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
    }
