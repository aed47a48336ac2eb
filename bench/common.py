"""Shared pieces of the benchmarks: a result row, timing, a throw-away runtime."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from relay.app_factory import create_app
from relay.config import load_settings
from relay.runtime import Runtime


@dataclass(frozen=True)
class Row:
    """One measurement: relay against the baseline measured in the same run."""

    name: str
    relay: float
    baseline: float
    unit: str
    higher_is_better: bool
    note: str = ""
    # The 1-minute load average when the row was measured (the machine is shared).
    load: float = field(default_factory=lambda: load_average())

    @property
    def ratio(self) -> float:
        """relay / baseline for rates, baseline / relay for times: above 1 means relay is ahead."""
        if self.higher_is_better:
            return self.relay / self.baseline
        return self.baseline / self.relay


def load_average() -> float:
    """The 1-minute load average now."""
    return os.getloadavg()[0]


def best_of(rounds: int, fn: Callable[[], float]) -> float:
    """Median of ``rounds`` measurements (these machines are noisy)."""
    return statistics.median(fn() for _ in range(rounds))


def per_call_us(fn: Callable[[], None], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls * 1e6


@contextmanager
def bench_runtime(**overrides: object) -> Iterator[tuple[object, Runtime]]:
    """A relay app on embedded defaults (or the RELAY_* environment) in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        settings = load_settings(var_dir=Path(tmp) / "var", **overrides)
        app = create_app(settings)
        runtime: Runtime = app.extensions["relay"]
        from relay.migrations import upgrade

        upgrade(settings.database_url)
        try:
            yield app, runtime
        finally:
            runtime.close()
            if runtime.embedded_redis is not None:
                runtime.embedded_redis.stop()
