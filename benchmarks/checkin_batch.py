"""CPU of one batch of check-ins as the server writes it (``ServerContext._write_checkins``, what
GroupCommit calls), without HTTP: this tree against ``--baseline``, on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/checkin_batch.py [--backend sqlite|postgresql|both]
        [--devices 10000] [--batch 16] [--batches 1500] [--rounds 3] [--baseline COMMIT]

Each backend gets one fresh database (a SQLite file, or a new schema of ``--database-url`` /
$EDGESHIP_TEST_DATABASE_URL) holding ``--devices`` devices with known secrets. Then the
baseline's code and this tree's, each in a process of its own with its ``src/`` first on the
path, write the same ``--batches`` batches of ``--batch`` random devices' check-ins, in turn,
``--rounds`` times each. Printed per batch: wall time, the process's CPU and (PostgreSQL) the
CPU of the database backends serving it. These figures move less with the machine's other
load than throughput does (``checkin_load.py``), but leave out everything but the write.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.checkin_load import extract_baseline
from benchmarks.checkins import add_fleet_options, chosen_backends, drop_schema, postgres_schema
from benchmarks.procstat import cpu_s

REPO = Path(__file__).resolve().parents[1]
APP_NAME = "edgeship-checkin-batch"
WARM_UP = 50  # batches before measuring: the pool's connections, compiled and prepared statements


def fill(database_url: str, n: int, devices_file: Path) -> None:
    """``n`` enrolled devices, written straight into a migrated database, and their credentials."""
    from sqlalchemy import insert

    from edgeship.server.credentials import hash_secret, new_credential
    from edgeship.server.db import Database
    from edgeship.server.models import Device

    db = Database(database_url)
    try:
        db.migrate()
        creds = [new_credential("dev") for _ in range(n)]
        now = datetime.now(timezone.utc)
        with db.write() as session:
            session.execute(insert(Device), [
                {"id": c.id, "secret_hash": hash_secret(c.secret), "tags": {"fleet": "bench"}, "facts": {"arch": "x86_64"},
                 "state": "idle", "enrolled_at": now} for c in creds
            ])
        if db.dialect == "postgresql":
            with db.engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE devices")  # as autovacuum would, after the fleet enrolled
    finally:
        db.dispose()
    devices_file.write_text("".join(f"{c.id} {c.secret}\n" for c in creds))


def child(data_dir: Path, database_url: str, devices_file: Path, batch: int, batches: int) -> None:
    """Runs in the measured process: writes the batches, prints one JSON line of figures."""
    from edgeship.server import fleet, schemas
    from edgeship.server.context import ServerContext
    from edgeship.server.credentials import Credential
    from edgeship.server.settings import ServerSettings

    ctx = ServerContext.build(ServerSettings(data_dir=data_dir, database_url=database_url, access_log=False))
    devices = [line.split() for line in devices_file.read_text().splitlines()]
    req = schemas.CheckinRequest.model_validate({"state": "committed", "current": {"name": "app", "version": "1.0.0", "release_id": None}})
    rng = random.Random(1)  # the same batches for every process
    work = [[fleet.CheckinCall(Credential(d, s), d, req) for d, s in rng.sample(devices, batch)] for _ in range(WARM_UP + batches)]
    for calls in work[:WARM_UP]:
        ctx._write_checkins(calls)
    backends = _backends(ctx.db) if ctx.db.dialect == "postgresql" else []
    pg_before = sum(cpu_s(p) for p in backends)
    wall, cpu = time.perf_counter(), time.process_time()
    for calls in work[WARM_UP:]:
        results = ctx._write_checkins(calls)
        if not all(isinstance(r, schemas.CheckinResponse) for r in results):
            raise SystemExit(f"a check-in was refused: {results}")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    pg = sum(cpu_s(p) for p in backends) - pg_before
    ctx.db.dispose()
    print(json.dumps({"wall_ms": wall * 1e3 / batches, "cpu_ms": cpu * 1e3 / batches, "pg_cpu_ms": pg * 1e3 / batches if backends else None}))


def _backends(db: Any) -> list[int]:
    """Process IDs of the PostgreSQL backends of this process's connections (all carry APP_NAME)."""
    with db.engine.connect() as conn:
        return [int(p) for p in conn.exec_driver_sql(f"SELECT pid FROM pg_stat_activity WHERE application_name = '{APP_NAME}'").scalars()]


def measure(src: Path, data_dir: Path, database_url: str, devices_file: Path, args: argparse.Namespace) -> dict:
    """One measured process with ``src`` first on its path."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(data_dir), database_url, str(devices_file), str(args.batch), str(args.batches)],
        env={**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{REPO}"}, capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"the measured process failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_backend(backend: str, args: argparse.Namespace, work: Path, servers: dict[str, Path]) -> list[dict]:
    base = args.database_url
    if backend == "postgresql":
        database_url, schema = postgres_schema(base, APP_NAME)
    else:
        database_url, schema = f"sqlite:///{work / 'bench.db'}", None
    try:
        devices_file = work / "devices.txt"
        fill(database_url, args.devices, devices_file)
        runs: list[dict] = []
        for _ in range(args.rounds):
            for name, src in servers.items():
                data_dir = work / f"data-{len(runs)}"
                runs.append({"backend": backend, "server": name, "load_average": os.getloadavg()[0],
                             **measure(src, data_dir, database_url, devices_file, args)})
        return runs
    finally:
        if schema:
            drop_schema(base, schema)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        data_dir, database_url, devices_file, batch, batches = sys.argv[2:7]
        child(Path(data_dir), database_url, Path(devices_file), int(batch), int(batches))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_fleet_options(parser)
    parser.add_argument("--batch", type=int, default=16, help="check-ins per batch (random devices)")
    parser.add_argument("--batches", type=int, default=1500, help="measured batches per process")
    parser.add_argument("--rounds", type=int, default=3, help="processes per server, baseline and this tree in turn")
    parser.add_argument("--baseline", default="", help="git commit whose code is measured too ('' for this tree only)")
    args = parser.parse_args()
    chosen = chosen_backends(args)
    with tempfile.TemporaryDirectory(prefix="edgeship-batch-") as tmp:
        servers = {f"baseline {args.baseline}": extract_baseline(args.baseline, Path(tmp) / "baseline")} if args.baseline else {}
        servers["this tree"] = REPO / "src"
        for backend in chosen:
            work = Path(tmp) / backend
            work.mkdir()
            runs = run_backend(backend, args, work, servers)
            for name in servers:
                mine = [r for r in runs if r["server"] == name]
                cpu = sorted(r["cpu_ms"] for r in mine)
                pg = sorted(r["pg_cpu_ms"] for r in mine if r["pg_cpu_ms"] is not None)
                print(f"{backend:10} {name[:50]:50} batch of {args.batch}, {args.devices} devices: "
                      f"wall {min(r['wall_ms'] for r in mine):.2f} ms, CPU {' / '.join(f'{c:.2f}' for c in cpu)} ms"
                      + (f", PostgreSQL {' / '.join(f'{c:.2f}' for c in pg)} ms" if pg else "")
                      + f" per batch (load average {max(r['load_average'] for r in mine):.1f})")


if __name__ == "__main__":
    main()
