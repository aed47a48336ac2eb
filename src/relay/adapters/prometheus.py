"""Prometheus metrics on a registry owned by the app (no process-global state to reset in tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


class Metrics:
    """The metrics relay exports at ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "relay_http_requests",
            "HTTP requests by endpoint and status",
            ["method", "endpoint", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "relay_http_request_seconds",
            "HTTP request duration",
            ["endpoint"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


def init_metrics() -> Metrics:
    return Metrics()
