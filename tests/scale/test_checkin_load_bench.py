"""The check-in benchmark's smoke run (benchmarks/checkin_load.py, tiny sizes, on PostgreSQL):
the baseline commit's server and this tree's are both measured in one run, every request is
answered 200, and benchmarks/capacity.py recomputes the model's check-in costs from its file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.capacity import Costs, checkin_costs
from benchmarks.checkin_load import BEFORE_FAST_PATH
from tests.helpers.server import postgres_base_url

ROOT = Path(__file__).resolve().parents[2]


def _costs() -> Costs:
    return Costs(1.3, 0.27, 0.5, 0.1, 150.0, 600.0, 300.0, 2.0, 0.7)


def _run(server: str, event_share: float, cpu: float) -> dict:
    return {"backend": "postgresql", "server": server, "event_share": event_share, "workers": 2, "server_rss_mib": 300.0,
            "server_cpu_ms_per_request": cpu, "postgres_cpu_ms_per_request": cpu / 4}


def test_capacity_takes_the_checkin_costs_of_this_trees_checkin_only_run() -> None:
    load = {"runs": [_run("baseline 6848e38", 0, 1.2), _run("this tree", 0.1, 0.9), _run("this tree", 0, 0.6)]}
    c = checkin_costs(_costs(), load)
    assert (c.server_ms_per_checkin, c.postgres_ms_per_checkin) == (0.6, 0.15)
    assert (c.server_ms_per_event, c.device_row_bytes, c.rss_mib_per_worker) == (0.5, 600.0, 150.0)  # the rest stays the scale run's
    with pytest.raises(SystemExit, match="event-share 0"):
        checkin_costs(_costs(), {"runs": [_run("this tree", 0.1, 0.9)]})


def test_smoke_run_against_the_baseline_and_capacity_from_its_file(tmp_path: Path) -> None:
    out = tmp_path / "checkin.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "checkin_load.py"), "--backend", "postgresql", "--database-url",
                          postgres_base_url(), "--devices", "20", "--duration", "2", "--connections", "4", "--event-share", "0",
                          "--out", str(out)], capture_output=True, text=True, timeout=600, check=False, env=env)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    runs = json.loads(out.read_text())["runs"]
    assert [r["server"] for r in runs] == [f"baseline {BEFORE_FAST_PATH}", "this tree"]
    for r in runs:
        assert r["checkins_per_s"] > 0 and r["non_200"] == 0 and r["socket_errors"] == 0, r
        assert r["server_cpu_ms_per_request"] > 0 and r["postgres_cpu_ms_per_request"] > 0, r
    assert runs[1]["vs_baseline"] > 0 and "the baseline" in run.stdout
    assert "database_url" not in json.loads(out.read_text())["args"]  # it may carry a password

    scale = ROOT / "benchmarks" / "results" / "scale-2026-11-25.json"
    model = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "capacity.py"), str(scale), str(out)],
                           capture_output=True, text=True, timeout=60, check=True)
    assert f"server_ms_per_checkin={runs[1]['server_cpu_ms_per_request']}" in model.stdout
    assert "### Check-ins" in model.stdout and "| 1,000,000 |" in model.stdout
