"""Prometheus metrics, in a registry per app (two servers in one process must not share counters).

Request counts and latencies are per process; with several workers each has its own
(Prometheus sums them only if each worker is scraped, see docs/server.md). Fleet gauges come
from the database at scrape time, so every instance reports the same fleet.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from edgeship.server.db import Database
from edgeship.server.models import Device


class FleetCollector(Collector):
    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        by_state = GaugeMetricFamily("edgeship_devices_by_state", "Enrolled devices by agent state.", labels=["state"])
        by_release = GaugeMetricFamily("edgeship_devices_by_release", "Enrolled devices by the release they run.", labels=["release"])
        active = Device.decommissioned_at.is_(None)
        name = Device.current["name"].as_string()
        version = Device.current["version"].as_string()
        with self.db.read() as session:
            for state, count in session.execute(select(Device.state, func.count()).where(active).group_by(Device.state)):
                by_state.add_metric([state], count)
            for n, v, count in session.execute(select(name, version, func.count()).where(active).group_by(name, version)):
                by_release.add_metric([f"{n}@{v}" if n else "none"], count)
        yield by_state
        yield by_release


class ServerMetrics:
    def __init__(self, db: Database) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "edgeship_http_requests", "HTTP requests by route and status.", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "edgeship_http_request_seconds",
            "Time to answer, by route.",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )
        self.checkins = Counter("edgeship_checkins", "Device check-ins answered.", registry=self.registry)
        self.events = Counter("edgeship_events", "Device events stored (duplicates excluded).", registry=self.registry)
        self.bytes_served = Counter("edgeship_repo_bytes_served", "Body bytes sent from /repo/.", ["kind"], registry=self.registry)
        self.push_notices = Counter(
            "edgeship_push_notices", "MQTT push notices handed to the broker client (queued) or dropped (its buffer was full).",
            ["outcome"], registry=self.registry,
        )
        self.registry.register(FleetCollector(db))

    def render(self) -> bytes:
        return generate_latest(self.registry)
