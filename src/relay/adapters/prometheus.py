"""Prometheus metrics on a registry owned by the app (no process-global state to reset in tests).

Processes that fork workers (gunicorn's API workers, Celery's prefork children) run in
prometheus_client's multiprocess mode, so a scrape of any one of them returns totals over all of
them: the parent calls ``enable_multiprocess(var_dir, role)`` before it forks, which creates a
directory of its own under ``var/metrics/<role>-<pid>`` (removing directories earlier runs left
behind), and each child writes its values to memory-mapped files there. ``Metrics`` then exposes
those files through ``MultiProcessCollector`` instead of the process's own values, and
``process_exited(pid)`` drops the live gauges of a child that is gone.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SSE_KINDS = ("workflow", "chat")


def multiprocess_dir() -> Path | None:
    """The multiprocess directory of this process, when multiprocess mode is on."""
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def enable_multiprocess(var_dir: Path, role: str) -> Path:
    """Turn multiprocess mode on for this process and the children it forks from now on.

    Creates an empty ``var/metrics/<role>-<pid>`` and removes the ``<role>-*`` directories of
    processes that no longer run. Call it before any ``Metrics`` is built.
    """
    root = var_dir / "metrics"
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob(f"{role}-*"):
        pid = old.name.rpartition("-")[2]
        if not pid.isdigit() or int(pid) == os.getpid() or not psutil.pid_exists(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    directory = root / f"{role}-{os.getpid()}"
    directory.mkdir(mode=0o700)
    os.environ[MULTIPROC_ENV] = str(directory)
    # prometheus_client picks its value class when it is first imported; values created from
    # now on (in this process and in forked children) are memory-mapped files in ``directory``.
    prometheus_values.ValueClass = prometheus_values.get_value_class()  # type: ignore[no-untyped-call]
    return directory


def process_exited(pid: int) -> None:
    """A child that wrote metrics is gone: drop its live gauges (its counters stay counted)."""
    directory = multiprocess_dir()
    if directory is not None and directory.is_dir():
        mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


class Metrics:
    """The metrics relay exports at ``/metrics``.

    In multiprocess mode the metric objects below write to the shared directory and the registry
    reads every process's files; collectors registered on ``registry`` (Redis- and SQL-backed,
    the same from any process) are added once either way.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = multiprocess_dir()
        own: CollectorRegistry | None = self.registry
        if self.multiprocess is not None:
            MultiProcessCollector(self.registry, path=str(self.multiprocess))  # type: ignore[no-untyped-call]
            own = None  # this process's values are in the files already
        self.http_requests = Counter(
            "relay_http_requests",
            "HTTP requests by endpoint and status",
            ["method", "endpoint", "status"],
            registry=own,
        )
        self.http_latency = Histogram(
            "relay_http_request_seconds",
            "HTTP request duration",
            ["endpoint"],
            registry=own,
        )
        self.sse_open = Gauge(
            "relay_sse_streams_open",
            "SSE streams being served now",
            ["kind"],
            registry=own,
            multiprocess_mode="livesum",
        )
        self.sse_streams = Counter(
            "relay_sse_streams",
            "SSE streams served, by kind and whether the client resumed (Last-Event-ID)",
            ["kind", "resumed"],
            registry=own,
        )
        self.sse_events = Counter(
            "relay_sse_events_sent",
            "Events written to SSE clients (pings and the retry hint not counted)",
            ["kind"],
            registry=own,
        )

        # Known label sets start at 0: a series exists before its first event, in every process.
        for kind in SSE_KINDS:
            self.sse_open.labels(kind)
            self.sse_events.labels(kind)
            for resumed in ("false", "true"):
                self.sse_streams.labels(kind, resumed)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


def init_metrics() -> Metrics:
    return Metrics()
