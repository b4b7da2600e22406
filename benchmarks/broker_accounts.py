"""Broker accounts: a device enrolled while the broker holds N accounts — what it costs
Mosquitto to let it in, through the dynamic-security plugin (what `server --mqtt-dynsec` sends)
against rewriting the password and ACL files and reloading (`edgeship mqtt config` + SIGHUP).

    python benchmarks/broker_accounts.py                 # N = 1,000 and 10,000, 50 new devices
    python benchmarks/broker_accounts.py --accounts 1000 --new 20

For each N, a real Mosquitto on a free port holds N device accounts (each with its own role/ACL
and one tag) and the server's. Then ``--new`` devices are added one at a time:
- dynsec: the server's createRole + createClient commands on the control topic;
- files: the files rewritten with one more device, then SIGHUP.
After each, the new device logs in (retrying every 10 ms) — that wall time is the latency.
Reported per added device: median and worst latency, and the broker's CPU (utime + stime from
/proc) spent on the additions, per device. Plus the broker's start-up time with N accounts.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from benchmarks.procstat import cpu_s
from edgeship import dynsec
from edgeship.broker import DeviceAccount, broker_files, mosquitto_hash
from edgeship.cli.mqtt import plugin_path
from edgeship.loopback import free_port
from tests.helpers.mosquitto import Mosquitto

SERVER, SERVER_PW = "edgeship-server", "server-pw"


def accounts(n: int, start: int = 0) -> list[DeviceAccount]:
    # One hash shared by all: PBKDF2 here is set-up time, not what is measured.
    h = mosquitto_hash("pw")
    return [DeviceAccount(f"dev_{i:08d}", h, {"site": f"s{i % 50}"}) for i in range(start, start + n)]


def can_login(port: int, user: str, password: str) -> bool:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{user}")
    client.username_pw_set(user, password)
    done, ok = threading.Event(), []

    def connected(_c: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
        ok.append(not reason.is_failure)
        done.set()

    client.on_connect = connected
    try:
        client.connect("127.0.0.1", port)
    except OSError:
        return False
    client.loop_start()
    done.wait(5)
    client.disconnect()
    client.loop_stop()
    return bool(ok and ok[0])


def wait_login(port: int, user: str) -> float:
    start = time.perf_counter()
    while not can_login(port, user, "pw"):
        if time.perf_counter() - start > 60:
            raise RuntimeError(f"{user} could not log in within 60 s")
        time.sleep(0.01)
    return time.perf_counter() - start


def start(d: Path, listeners: str, port: int) -> tuple[Mosquitto, float]:
    broker = Mosquitto(d, listeners=listeners, port=port)
    t = time.perf_counter()
    broker.start()
    wait_login(port, "dev_00000000")  # listening is not loaded: wait until an account works
    return broker, time.perf_counter() - t


def run_dynsec(tmp: Path, n: int, new: int) -> dict:
    port, conf = free_port(), tmp / "dynamic-security.json"
    conf.write_text(json.dumps(dynsec.initial_config(SERVER, mosquitto_hash(SERVER_PW), accounts(n))))
    listener = f"listener {port} 127.0.0.1"
    broker, startup = start(tmp / "b", dynsec.broker_conf(plugin_path(None), conf, [listener]), port)
    server = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="server")
    server.username_pw_set(SERVER, SERVER_PW)
    server.connect("127.0.0.1", port)
    server.loop_start()
    pid = broker.proc.pid  # type: ignore[union-attr]
    lat, cpu0 = [], cpu_s(pid)
    try:
        for a in accounts(new, n):
            t = time.perf_counter()
            server.publish(dynsec.CONTROL_TOPIC, dynsec.payload(dynsec.add_device(a.device_id, "pw", a.tags)), qos=1).wait_for_publish(30)
            wait_login(port, a.device_id)
            lat.append(time.perf_counter() - t)
        cpu = cpu_s(pid) - cpu0
    finally:
        server.disconnect()
        server.loop_stop()
        broker.stop()
    return {"way": "dynsec", "accounts": n, "startup_s": startup, "lat": lat, "cpu_per_device_s": cpu / new,
            "config_bytes": conf.stat().st_size}


def run_files(tmp: Path, n: int, new: int) -> dict:
    port, out = free_port(), tmp / "files"
    out.mkdir()

    def write(devs: list[DeviceAccount]) -> str:
        files = broker_files(devs, SERVER, mosquitto_hash(SERVER_PW), out_dir=out, port=port, bind="127.0.0.1")
        (out / "passwords").write_text(files.passwords)
        (out / "acl").write_text(files.acl)
        return files.conf

    devs = accounts(n)
    broker, startup = start(tmp / "b", write(devs), port)
    pid = broker.proc.pid  # type: ignore[union-attr]
    lat, cpu0 = [], cpu_s(pid)
    try:
        for a in accounts(new, n):
            t = time.perf_counter()
            devs.append(a)
            write(devs)
            os.kill(pid, signal.SIGHUP)
            wait_login(port, a.device_id)
            lat.append(time.perf_counter() - t)
        cpu = cpu_s(pid) - cpu0
    finally:
        broker.stop()
    return {"way": "files", "accounts": n, "startup_s": startup, "lat": lat, "cpu_per_device_s": cpu / new,
            "config_bytes": (out / "passwords").stat().st_size + (out / "acl").stat().st_size}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", default="1000,10000", help="accounts the broker holds, comma-separated")
    ap.add_argument("--new", type=int, default=50, help="devices added one at a time at each size")
    args = ap.parse_args(argv)
    rows = []
    for n in (int(x) for x in args.accounts.split(",")):
        for fn in (run_files, run_dynsec):
            with tempfile.TemporaryDirectory() as d:
                rows.append(fn(Path(d), n, args.new))
    print(f"{'accounts':>9} {'way':>7} {'start s':>8} {'config MB':>10} {'login p50 ms':>13} {'worst ms':>9} {'broker CPU ms/device':>21}")
    for r in rows:
        print(f"{r['accounts']:>9} {r['way']:>7} {r['startup_s']:>8.2f} {r['config_bytes'] / 1e6:>10.1f} "
              f"{statistics.median(r['lat']) * 1000:>13.1f} {max(r['lat']) * 1000:>9.1f} {r['cpu_per_device_s'] * 1000:>21.1f}")
    print("\ndynsec / files, same run (broker CPU per added device):")
    for n in sorted({r["accounts"] for r in rows}):
        f, d = (next(r for r in rows if r["accounts"] == n and r["way"] == w) for w in ("files", "dynsec"))
        print(f"{n:>9} accounts: x{d['cpu_per_device_s'] / f['cpu_per_device_s']:.2f} CPU, "
              f"login latency p50 x{statistics.median(d['lat']) / statistics.median(f['lat']):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
