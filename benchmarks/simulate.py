"""`edgeship simulate` at fleet scale: wall time, CPU time and peak memory of the whole command,
this tree against a baseline commit measured in the same run.

    .venv/bin/python benchmarks/simulate.py [--devices 100000,1000000] [--baseline 5ad43b9]
        [--release-bad-rate 0] [--fault crash-download=0.01,...] [--out result.json]

Each size runs ``edgeship simulate --devices N --json`` in a fresh process, first with the
baseline's ``src/`` (a git commit, extracted to a temporary directory and put first on the
path; the default is the last commit with the event-driven per-device model) and then with
this tree's. CPU time and peak RSS come from the process's own rusage, so they are less
sensitive to neighbours on a shared machine than the wall time; the load average is printed
beside each run. ``--baseline ''`` measures this tree only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.checkin_load import extract_baseline

REPO = Path(__file__).resolve().parents[1]
# The last commit whose simulator moved each device through an event heap in Python.
EVENT_DRIVEN = "5ad43b9"
FAULTS = "crash-download=0.01,power-loss-switch=0.005,slow-link=0.1,offline=0.05"
# The same command line for both trees: ``edgeship simulate``, in a process of its own.
CHILD = "import sys; from edgeship.cli.main import run; sys.exit(run(sys.argv[1:]))"


def run_once(src: Path, devices: int, args: argparse.Namespace, out: Path) -> dict:
    """One ``edgeship simulate`` run with ``src`` first on the path."""
    cmd = [sys.executable, "-c", CHILD, "simulate", "--devices", str(devices), "--seed", str(args.seed),
           "--release-bad-rate", str(args.release_bad_rate), "--out", str(out), "--json"]
    if args.fault:
        cmd += ["--fault", args.fault]
    load = os.getloadavg()[0]
    began = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(src)})
    assert proc.stdout is not None
    printed = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - began
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"edgeship simulate --devices {devices} failed with {src}")
    report = json.loads(printed)
    result = report["result"]
    return {
        "devices": devices,
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024),
        "load_before": round(load, 1),
        "load_after": round(os.getloadavg()[0], 1),
        "ticks": len(report["samples"]),
        "simulated_h": round(result["simulated_s"] / 3600, 1),
        "status": result["status"],
        "phase": result["phase"],
        "ran_release": result["devices_ran_release"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", default="100000,1000000", help="fleet sizes, comma-separated")
    parser.add_argument("--baseline", default=EVENT_DRIVEN, help="git commit whose simulator is measured first ('' for none)")
    parser.add_argument("--release-bad-rate", type=float, default=0.0)
    parser.add_argument("--fault", default=FAULTS, help="--fault of edgeship simulate ('' for none)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgeship-simbench-") as tmp:
        baseline = extract_baseline(args.baseline, Path(tmp) / "baseline") if args.baseline else None
        for n in (int(x) for x in args.devices.split(",") if x):
            pair = {}
            for label, src in ([("baseline " + args.baseline, baseline)] if baseline else []) + [("this tree", REPO / "src")]:
                assert src is not None
                row = {"tree": label, **run_once(src, n, args, Path(tmp) / f"out-{n}-{len(rows)}")}
                pair[label] = row
                rows.append(row)
                print(f"{n:>9,} devices  {label:<17} {row['wall_s']:7.1f} s wall  {row['cpu_s']:7.1f} s CPU  "
                      f"{row['peak_rss_mib']:5} MiB peak  load {row['load_before']}-{row['load_after']}  "
                      f"{row['ticks']} ticks, {row['simulated_h']} h simulated, {row['status']} in {row['phase']}, "
                      f"{row['ran_release']:,} ran the release", flush=True)
            if len(pair) == 2:
                old, new = pair.values()
                print(f"{'':>9}          this tree: x{old['wall_s'] / new['wall_s']:.1f} faster wall, "
                      f"x{old['cpu_s'] / new['cpu_s']:.1f} less CPU than the baseline", flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
