"""Prometheus metrics of one runtime, in a registry of its own (two runtimes in one process stay apart)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from edgeship.runtime.rss import rss_bytes

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TPS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


class RuntimeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("edgeship_runtime_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("edgeship_runtime_request_seconds", "request latency (until the last byte)",
                                 ["endpoint"], buckets=_LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("edgeship_runtime_generated_tokens", "tokens generated", ["model"], registry=r)
        self.tokens_per_s = Histogram("edgeship_runtime_tokens_per_second", "generation speed per request",
                                      ["model"], buckets=_TPS_BUCKETS, registry=r)
        self.load_seconds = Gauge("edgeship_runtime_model_load_seconds", "load + warm-up time of the serving release",
                                  registry=r)
        self.swaps = Counter("edgeship_runtime_swaps", "swaps by outcome (ok, failed)", ["outcome"], registry=r)
        self.ready = Gauge("edgeship_runtime_ready", "1 while a release is loaded and serving", registry=r)
        self.rss = Gauge("edgeship_runtime_rss_bytes", "resident memory of the runtime process", registry=r)
        self.rss.set_function(rss_bytes)
        self.mqtt_dropped = Counter("edgeship_runtime_mqtt_dropped", "results dropped: broker away and buffer full",
                                    registry=r)

    def observe_generation(self, model: str, tokens: int, seconds: float) -> None:
        self.tokens.labels(model).inc(tokens)
        if seconds > 0 and tokens:
            self.tokens_per_s.labels(model).observe(tokens / seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
