"""`edgeship simulate --real-agents`: real agent processes, a real server, the server's own rollout job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeship.cli.main import run


@pytest.mark.slow
def test_a_bad_release_rehearsed_on_real_agents_stops_in_the_pilot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["simulate", "--real-agents", "4", "--release-bad-rate", "1", "--stages", "50,100", "--bake", "1s",
                "--out", str(tmp_path / "run"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    final = report["final"]
    assert final["status"] == "paused" and "failed in pilot" in final["reason"]
    assert [s["failed"] for s in final["stages"]] == [1, 0, 0]  # one pilot (4 // 10, at least 1); nobody else tried
    assert set(report["versions"].values()) == {"1.0.0"} and len(report["versions"]) == 4
    assert [t["status"] for t in report["timeline"]][-1] == "paused"
    assert (tmp_path / "run" / "server.log").exists()
