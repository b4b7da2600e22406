"""The capacity model of docs/scaling.md, computed from a ``benchmarks/scale.py`` result file.

    .venv/bin/python benchmarks/capacity.py scale-results.json [checkin-load-results.json]

With a second file, written by ``benchmarks/checkin_load.py --event-share 0 --out``, the
per-check-in costs (server and PostgreSQL CPU) come from its PostgreSQL run of this tree instead: check-in got cheaper than in the scale run, the rest did not change.

Prints the Markdown tables of docs/scaling.md: check-ins/s per fleet size and poll interval,
server processes and PostgreSQL CPU they need, database rows, writes and bytes, blob egress
per release with and without deltas, and MQTT connections. The per-unit costs come from the
measured run; the fleet sizes, intervals, event rates and model sizes are the assumptions
listed at the top of this file. Pure arithmetic: no I/O beyond reading the file.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from dataclasses import dataclass, replace
from pathlib import Path

FLEETS = (10_000, 100_000, 1_000_000)
POLLS_S = {"30 s (no push; the server's default)": 30, "5 min": 300, "10 min (push; the agent's default --push-poll)": 600}
EVENTS_PER_DEVICE_DAY = 50  # 24 hourly metrics, ~10 state changes per update, feedback and faults
EVENT_RETENTION_DAYS = 30
UTILISATION = 0.6  # plan server processes to run at most this busy: room for bursts and a lost instance
WORKERS_PER_INSTANCE = 4  # a 4-vCPU instance, one worker per core
MODEL_GIB = 1.0
# Patch size / new file size, from the README's delta benchmark (64 MiB F16 GGUF pairs):
# (a) 10% of tensors fine-tuned 4645 KiB, (b) metadata only 350 B, (e) every weight nudged 11060 KiB.
DELTA_RATIOS = {"10% of tensors fine-tuned": 4645 / 65536, "every weight nudged": 11060 / 65536, "metadata only": 350 / 2**26}
GIB = 2**30


@dataclass(frozen=True)
class Costs:
    """Per-unit costs measured by scale.py."""

    server_ms_per_checkin: float
    postgres_ms_per_checkin: float
    server_ms_per_event: float
    postgres_ms_per_event: float
    rss_mib_per_worker: float
    device_row_bytes: float
    event_row_bytes: float
    broker_kib_per_connection: float
    broker_kib_per_account: float  # its password and ACL entries, loaded whether it is connected or not

    @classmethod
    def from_report(cls, report: dict) -> Costs:
        runs = report["checkins"]["runs"]
        events = report["checkins"]["events_run"]
        tables = report["checkins"]["tables"]
        push = report["push"].get("server") or report["push"]["paho"]
        bare = report["push"].get("paho")
        accounts_mib = push["broker_rss_mib_idle"] - bare["broker_rss_mib_idle"] if bare and push is not bare else 0.0
        workers = report["checkins"]["workers_per_instance"]
        return cls(
            server_ms_per_checkin=statistics.median(r["server_cpu_ms_per_request"] for r in runs),
            postgres_ms_per_checkin=statistics.median(r["postgres_cpu_ms_per_request"] for r in runs),
            server_ms_per_event=events["server_cpu_ms_per_request"] / 5,
            postgres_ms_per_event=events["postgres_cpu_ms_per_request"] / 5,
            rss_mib_per_worker=max(r["server_rss_mib_per_instance"] for r in runs) / workers,
            device_row_bytes=tables["devices"]["bytes_per_row"],
            event_row_bytes=tables["events"]["bytes_per_row"],
            broker_kib_per_connection=(push["broker_rss_mib"] - push["broker_rss_mib_idle"]) * 1024 / push["devices"],
            broker_kib_per_account=accounts_mib * 1024 / push["devices"],
        )


def checkin_costs(costs: Costs, load: dict) -> Costs:
    """``costs`` with the per-check-in CPU of a ``checkin_load.py`` result (its PostgreSQL run of
    this tree, measured with check-ins only, so that CPU per request is per check-in). Worker
    memory stays the scale run's: that result's RSS includes the parent process of the workers."""
    runs = [r for r in load["runs"] if r["backend"] == "postgresql" and r["server"] == "this tree" and r["event_share"] == 0]
    if not runs:
        raise SystemExit("the check-in result file has no PostgreSQL run of this tree with --event-share 0")
    run = runs[-1]
    return replace(costs, server_ms_per_checkin=run["server_cpu_ms_per_request"], postgres_ms_per_checkin=run["postgres_cpu_ms_per_request"])


def _n(x: float) -> str:
    """A figure rounded for a capacity table: three significant digits above 1,000."""
    if x >= 1000:
        digits = len(str(int(x))) - 3
        return f"{round(x, -digits):,.0f}"
    return f"{x:,.1f}" if x < 10 else f"{x:,.0f}"


def _bytes(b: float) -> str:
    for unit, size in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= size:
            return f"{b / size:,.1f} {unit}"
    return f"{b:.0f} B"


def checkin_table(c: Costs) -> list[str]:
    out = ["| devices | poll every | check-ins/s | server CPU cores | server processes at 60 % | instances of 4 | their RAM | PostgreSQL CPU cores | check-in writes/s |",
           "|---|---|---|---|---|---|---|---|---|"]
    for n in FLEETS:
        for label, poll in POLLS_S.items():
            rate = n / poll
            cores = rate * c.server_ms_per_checkin / 1000
            workers = max(1, math.ceil(cores / UTILISATION))
            instances = max(2, math.ceil(workers / WORKERS_PER_INSTANCE))  # two at least: one may fail
            ram = instances * WORKERS_PER_INSTANCE * c.rss_mib_per_worker * 2**20
            pg = rate * c.postgres_ms_per_checkin / 1000
            out.append(f"| {n:,} | {label} | {_n(rate)} | {cores:.2f} | {workers} | {instances} | {_bytes(ram)} | {pg:.2f} | {_n(rate)} |")
    return out


def database_table(c: Costs) -> list[str]:
    out = ["| devices | device rows | their size | events/day | events/s (mean) | event CPU: server / PostgreSQL cores | events kept 30 days | their size |",
           "|---|---|---|---|---|---|---|---|"]
    for n in FLEETS:
        per_day = n * EVENTS_PER_DEVICE_DAY
        per_s = per_day / 86_400
        kept = per_day * EVENT_RETENTION_DAYS
        out.append(f"| {n:,} | {n:,} | {_bytes(n * c.device_row_bytes)} | {_n(per_day)} | {_n(per_s)} "
                   f"| {per_s * c.server_ms_per_event / 1000:.2f} / {per_s * c.postgres_ms_per_event / 1000:.2f} "
                   f"| {_n(kept)} | {_bytes(kept * c.event_row_bytes)} |")
    return out


def egress_table() -> list[str]:
    model = MODEL_GIB * GIB
    out = ["| devices | full model | " + " | ".join(f"delta: {k} ({v:.1%})" for k, v in DELTA_RATIOS.items()) + " |",
           "|---|---|" + "---|" * len(DELTA_RATIOS)]
    for n in FLEETS:
        out.append(f"| {n:,} | {_bytes(n * model)} | " + " | ".join(_bytes(n * model * r) for r in DELTA_RATIOS.values()) + " |")
    return out


def mqtt_table(c: Costs) -> list[str]:
    out = ["| devices | MQTT connections | broker memory: accounts + connections | notices for a rollout stage of 10 % |", "|---|---|---|---|"]
    for n in FLEETS:
        mem = n * (c.broker_kib_per_account + c.broker_kib_per_connection) * 1024
        out.append(f"| {n:,} | {n:,} | {_bytes(mem)} | {n // 10:,} |")
    return out


def main() -> None:
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    c = Costs.from_report(json.loads(Path(sys.argv[1]).read_text()))
    if len(sys.argv) == 3:
        c = checkin_costs(c, json.loads(Path(sys.argv[2]).read_text()))
    print(f"<!-- per-unit costs: {c} -->\n")
    for title, table in (("Check-ins", checkin_table(c)), ("Database", database_table(c)), ("Blob egress per release", egress_table()),
                         ("MQTT", mqtt_table(c))):
        print(f"### {title}\n")
        print("\n".join(table) + "\n")


if __name__ == "__main__":
    main()
