"""Health with levels: liveness, and readiness from components that are healthy, warning or
critical, each with the value measured and the thresholds it was judged by.

``/health/live`` answers from the process alone (no Redis, no database): an orchestrator restarts
a process that stops answering it, never one whose dependencies are down. ``/health/ready`` runs
every probe; any critical component makes it 503 (take the replica out of rotation), warnings
keep it 200 and say what degrades.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import psutil
import redis
from sqlalchemy import func, select

from relay.adapters.sql import Database
from relay.catalog import routed_queues
from relay.events.bus import EventBus
from relay.models import OutboxMessage, OutboxStatus, utcnow
from relay.monitoring.presence import WorkerPresence
from relay.workflow.nodes.sandbox import sandbox_status


class Level(StrEnum):
    HEALTHY = "healthy"
    WARNING = "warning"
    CRITICAL = "critical"


_ORDER = {Level.HEALTHY: 0, Level.WARNING: 1, Level.CRITICAL: 2}


def worst(levels: list[Level]) -> Level:
    """The most severe of ``levels`` (healthy when empty)."""
    return max(levels, key=_ORDER.__getitem__, default=Level.HEALTHY)


def judge(value: float, warning: float, critical: float) -> Level:
    """The level of ``value`` against ascending thresholds."""
    if value >= critical:
        return Level.CRITICAL
    if value >= warning:
        return Level.WARNING
    return Level.HEALTHY


@dataclass(frozen=True)
class Thresholds:
    """Warning and critical thresholds of the measured components."""

    redis_memory: tuple[float, float] = (0.80, 0.95)  # share of maxmemory
    resources: tuple[float, float] = (0.85, 0.95)  # share of CPU, memory, disk used
    event_error_rate: tuple[float, float] = (0.05, 0.25)  # failed receiver runs, last 5 minutes
    outbox_age: tuple[float, float] = (60.0, 300.0)  # seconds the oldest pending row waited
    database_latency_ms: tuple[float, float] = (250.0, 2000.0)


@dataclass
class Component:
    """One component's verdict."""

    name: str
    level: Level
    value: Any = None
    threshold: dict[str, Any] | None = None
    message: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    latency_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"level": self.level.value, "value": self.value}
        if self.threshold is not None:
            body["threshold"] = self.threshold
        if self.message:
            body["message"] = self.message
        body["latency_ms"] = round(self.latency_ms, 2)
        return {**body, **self.details}


@dataclass
class Readiness:
    """Every component; ``level`` is the worst of them."""

    components: list[Component]

    @property
    def level(self) -> Level:
        return worst([c.level for c in self.components])

    @property
    def ready(self) -> bool:
        return self.level is not Level.CRITICAL

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.level.value,
            "ready": self.ready,
            "degraded": [c.name for c in self.components if c.level is not Level.HEALTHY],
            "components": {c.name: c.as_dict() for c in self.components},
        }


def _timed(name: str, probe: Callable[[], Component]) -> Component:
    started = time.perf_counter()
    try:
        component = probe()
    except Exception as exc:  # an unreachable dependency is a verdict, not an error
        component = Component(name, Level.CRITICAL, message=f"{type(exc).__name__}: {exc}")
    component.latency_ms = (time.perf_counter() - started) * 1000
    return component


Probe = Callable[[], Component]
"""A readiness probe: measures one component and returns its verdict (may raise: critical)."""


class ReadinessChecker:
    """Runs the leveled probes of one runtime.

    Components beyond the built-in ones (the spool, the circuit breakers, ...) are given as
    ``extra_probes`` (name -> ``Probe``) by the composition root; they are judged, reported and
    alerted on (``relay.monitoring.watch``) like the others.
    """

    def __init__(
        self,
        client: redis.Redis,
        db: Database,
        presence: WorkerPresence,
        bus: EventBus,
        *,
        var_dir: Path,
        code_sandbox: str = "bubblewrap",
        thresholds: Thresholds | None = None,
        extra_probes: Mapping[str, Probe] | None = None,
        extra: Callable[[], list[Component]] | None = None,
    ) -> None:
        """``extra_probes``: more named probes; ``extra``: more components judged elsewhere
        (the spool, circuit breakers)."""
        self.extra_probes = dict(extra_probes or {})
        self.redis = client
        self.db = db
        self.presence = presence
        self.bus = bus
        self.var_dir = var_dir
        self.code_sandbox = code_sandbox
        self.thresholds = thresholds or Thresholds()
        self.extra = extra
        self.started = time.time()

    def live(self) -> dict[str, Any]:
        """The process answers: its id and uptime, nothing external."""
        return {
            "status": Level.HEALTHY.value,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started, 1),
        }

    def ready(self) -> Readiness:
        probes = {
            "redis": self._redis,
            "database": self._database,
            "workers": self._workers,
            "resources": self._resources,
            "events": self._events,
            "outbox": self._outbox,
            "sandbox": self._sandbox,
            **self.extra_probes,
        }
        components = [_timed(name, probe) for name, probe in probes.items()]
        if self.extra is not None:
            started = time.perf_counter()
            try:
                more = self.extra()
            except Exception as exc:
                more = [
                    Component("resilience", Level.CRITICAL, message=f"{type(exc).__name__}: {exc}")
                ]
            for component in more:
                component.latency_ms = (time.perf_counter() - started) * 1000
            components.extend(more)
        return Readiness(components)

    # --- probes ---------------------------------------------------------------------------------

    def _redis(self) -> Component:
        self.redis.ping()
        info: dict[str, Any] = self.redis.info("memory")
        used, limit = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
        details = {"used_memory": used, "maxmemory": limit}
        if not limit:  # no limit configured: nothing to judge the use by
            return Component("redis", Level.HEALTHY, value=None, details=details)
        warning, critical = self.thresholds.redis_memory
        share = used / limit
        return Component(
            "redis",
            judge(share, warning, critical),
            value=round(share, 4),
            threshold={"warning": warning, "critical": critical},
            details=details,
        )

    def _database(self) -> Component:
        started = time.perf_counter()
        self.db.ping()
        latency = (time.perf_counter() - started) * 1000
        warning, critical = self.thresholds.database_latency_ms
        return Component(
            "database",
            judge(latency, warning, critical),
            value=round(latency, 2),
            threshold={"warning": warning, "critical": critical},
        )

    def _workers(self) -> Component:
        live = self.presence.live()
        consumers = {
            queue: sum(1 for consumed in live.values() if queue in consumed)
            for queue in routed_queues()
        }
        missing = sorted(q for q, n in consumers.items() if n == 0)
        return Component(
            "workers",
            Level.CRITICAL if missing else Level.HEALTHY,
            value=consumers,
            threshold={"critical": "a routed queue with 0 consumers"},
            message=("no live consumer for: " + ", ".join(missing)) if missing else None,
            details={"workers": sorted(live)},
        )

    def _resources(self) -> Component:
        used = {
            "cpu": psutil.cpu_percent(interval=None) / 100,
            "memory": psutil.virtual_memory().percent / 100,
            "disk": psutil.disk_usage(str(_existing(self.var_dir))).percent / 100,
        }
        warning, critical = self.thresholds.resources
        levels = {name: judge(share, warning, critical) for name, share in used.items()}
        # A busy CPU slows requests down but does not stop them: a warning at most, so a load
        # spike never takes every replica out of rotation at once. Full memory or disk does.
        if levels["cpu"] is Level.CRITICAL:
            levels["cpu"] = Level.WARNING
        hot = sorted(name for name, level in levels.items() if level is not Level.HEALTHY)
        return Component(
            "resources",
            worst(list(levels.values())),
            value={name: round(share, 4) for name, share in used.items()},
            threshold={"warning": warning, "critical": critical},
            message=("high use of: " + ", ".join(hot)) if hot else None,
            details={"levels": {name: level.value for name, level in levels.items()}},
        )

    def _events(self) -> Component:
        rates = self.bus.error_rates(window_seconds=300)
        total = sum(r["total"] for r in rates.values())
        failures = sum(r["failures"] for r in rates.values())
        rate = failures / total if total else 0.0
        warning, critical = self.thresholds.event_error_rate
        failing = sorted(name for name, r in rates.items() if r["failures"])
        return Component(
            "events",
            judge(rate, warning, critical),
            value=round(rate, 4),
            threshold={"warning": warning, "critical": critical},
            details={"handled": total, "failures": failures, "failing_signals": failing},
        )

    def _outbox(self) -> Component:
        with self.db.session() as session:
            count, oldest = session.execute(
                select(func.count(), func.min(OutboxMessage.created_at)).where(
                    OutboxMessage.status == OutboxStatus.PENDING
                )
            ).one()
        age = (utcnow() - _aware(oldest)).total_seconds() if oldest is not None else 0.0
        warning, critical = self.thresholds.outbox_age
        return Component(
            "outbox",
            judge(age, warning, critical),
            value=round(age, 1),
            threshold={"warning": warning, "critical": critical},
            details={"pending": int(count or 0)},
        )

    def _sandbox(self) -> Component:
        # Code nodes refuse to run without their sandbox; everything else works: a warning.
        status = sandbox_status(self.code_sandbox)
        return Component(
            "sandbox",
            Level.HEALTHY if status.ok else Level.WARNING,
            value=status.mode,
            message=None if status.ok else status.reason,
        )


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _aware(value: Any) -> Any:
    # SQLite returns naive datetimes; relay stores UTC.
    if getattr(value, "tzinfo", None) is None:
        return value.replace(tzinfo=utcnow().tzinfo)
    return value
