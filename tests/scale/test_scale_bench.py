"""The scale benchmark's smoke run (benchmarks/scale.py --quick, push section): the server's own
push code, through a real Mosquitto configured by `edgeship mqtt config`, reaches every simulated
device, by their own topics and by their tag's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers.mosquitto import needs_mosquitto

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "scale.py"
DEVICES = 60


@needs_mosquitto
def test_quick_push_section_reaches_every_device(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--sections", "push", "--push-devices", str(DEVICES),
                          "--push-via", "server", "--json", str(out)],
                         capture_output=True, text=True, timeout=180, check=False)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["quick"] is True and len(report["load_at_start"]) == 3
    for via in ("server",):
        r = report["push"][via]
        assert r["devices"] == DEVICES and r["broker_rss_mib"] > 0
        for kind in ("per_device_topic", "one_tag_topic"):
            f = r[kind]
            assert f["received"] == DEVICES, (via, kind, f)
            assert 0 < f["p50_s"] <= f["p99_s"] <= f["all_received_s"], (via, kind, f)
            assert f["publish_s"] > 0
    assert "via server" in run.stdout and "devices had it" in run.stdout
