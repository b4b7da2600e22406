"""deploy/grafana/edgeship-server.json queries only metrics and labels the real server exports.

A real server (with push configured toward a broker that is not there, so notices are queued
and counted) answers a real agent's install; then every panel's PromQL is read for metric
and label names, and each must appear in the /metrics scrape.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgeship.loopback import free_port
from edgeship.samples.llama import write_tiny_llama
from edgeship.workspace import Workspace
from tests.agent.harness import REPO_ROOT, Device, Releases, Server
from tests.helpers.promql import reads

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "edgeship-server.json"


def queries(dashboard: dict) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_promql_reads_metric_and_label_names() -> None:
    r = reads('histogram_quantile(0.95, sum by (le, route) (rate(a_bucket{job=~"$job", status!="5.."}[$__rate_interval] offset 1h)))'
              ' / on(route) group_left(kind) sum without (x) (b_total) > bool 1e3 and c')
    assert r.metrics == {"a_bucket", "b_total", "c"}
    assert r.labels == {"le", "route", "job", "status", "kind", "x"}
    assert reads('topk(10, max by (release) (g{release="sum(x)"}))').metrics == {"g"}


def test_dashboard_is_valid_grafana_json() -> None:
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and dash["uid"] and dash["schemaVersion"] >= 36
    assert all(p["targets"] and p["datasource"]["uid"] == "${datasource}" for p in dash["panels"])


@pytest.fixture
def scraped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """Sample name -> label names, from /metrics after a device installed a release and a push notice was queued."""
    monkeypatch.delenv("EDGESHIP_KEY_PASSPHRASE", raising=False)
    ws = Workspace.init(tmp_path / "ws", passphrase=None)
    releases = Releases(ws, write_tiny_llama(tmp_path / "model.gguf"), tmp_path / "src")
    releases.publish("1.0.0")
    server = Server.create(ws, tmp_path / "server")
    server.settings = server.settings.model_copy(update={"mqtt": f"mqtt://127.0.0.1:{free_port()}"})
    server.start()
    try:
        device = Device(server, tmp_path / "dev", releases.root(), "site=lab", server.enroll_token({"site": "lab"}))
        server.assign("llm@1.0.0", tag="site=lab")  # a push notice, queued for the absent broker
        run = device.run()
        assert run.returncode == 0 and device.version() == "1.0.0", run.stderr
        text = httpx.get(server.url + "/metrics", timeout=10).text
    finally:
        server.stop()
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, set()).update(s.labels)
    return samples


def test_every_metric_the_dashboard_queries_exists(scraped: dict[str, set[str]]) -> None:
    dash = json.loads(DASHBOARD.read_text())
    variables = {v["name"] for v in dash["templating"]["list"]}
    scrape_labels = {"job", "instance"}  # added by Prometheus when it scrapes
    for expr in queries(dash):
        r = reads(expr)
        assert r.metrics, expr
        for name in r.metrics:
            assert name in scraped, f"{name} (in {expr!r}) is not in /metrics; it has {sorted(scraped)}"
        have = set().union(*(scraped[n] for n in r.metrics)) | scrape_labels
        assert r.labels <= have, f"{expr!r} uses labels {sorted(r.labels - have)} that its metrics lack"
    assert variables == {"datasource", "job"}
