"""Health of relay's components: Redis, database and a live consumer for every routed queue."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from relay.adapters.sql import Database
from relay.catalog import routed_queues
from relay.monitoring.presence import WorkerPresence
from relay.workflow.nodes.sandbox import sandbox_status


@dataclass(frozen=True)
class ComponentHealth:
    """Result of one probe."""

    name: str
    ok: bool
    latency_ms: float
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HealthReport:
    """All probes; healthy only when every component is."""

    components: list[ComponentHealth]

    @property
    def healthy(self) -> bool:
        return all(c.ok for c in self.components)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "healthy" if self.healthy else "unhealthy",
            "failing": [c.name for c in self.components if not c.ok],
            "components": {
                c.name: {
                    "ok": c.ok,
                    "latency_ms": round(c.latency_ms, 2),
                    **({"error": c.error} if c.error else {}),
                    **c.details,
                }
                for c in self.components
            },
        }


def _probe(name: str, fn: Callable[[], dict[str, Any] | None]) -> ComponentHealth:
    started = time.perf_counter()
    try:
        details = fn() or {}
    except Exception as exc:  # a probe reports any failure instead of raising
        return ComponentHealth(name, False, (time.perf_counter() - started) * 1000, str(exc))
    error = details.pop("error", None)
    return ComponentHealth(
        name, error is None, (time.perf_counter() - started) * 1000, error, details
    )


class HealthChecker:
    """Runs the probes against one runtime's Redis, database and worker presence."""

    def __init__(
        self,
        client: redis.Redis,
        db: Database,
        presence: WorkerPresence,
        code_sandbox: str = "bubblewrap",
        extra: Callable[[], list[ComponentHealth]] | None = None,
    ) -> None:
        """``code_sandbox``: the code-node sandbox mode to self-check (``RELAY_WORKFLOW_...``);
        ``extra``: more components judged elsewhere (the spool, circuit breakers)."""
        self.code_sandbox = code_sandbox
        self.extra = extra
        self.redis = client
        self.db = db
        self.presence = presence

    def check(self) -> HealthReport:
        components = [
            _probe("redis", self._redis),
            _probe("database", self._database),
            _probe("workers", self._workers),
            _probe("sandbox", self._sandbox),
        ]
        if self.extra is not None:
            components.extend(self.extra())
        return HealthReport(components)

    def _sandbox(self) -> dict[str, Any]:
        # Whether this host can run code nodes isolated (self-check once, then cached).
        status = sandbox_status(self.code_sandbox)
        return {
            "mode": status.mode,
            **status.details,
            **({"error": status.reason} if not status.ok else {}),
        }

    def _redis(self) -> dict[str, Any] | None:
        self.redis.ping()
        return None

    def _database(self) -> dict[str, Any] | None:
        self.db.ping()
        return None

    def _workers(self) -> dict[str, Any]:
        live = self.presence.live()
        queues = {
            queue: sorted(host for host, consumed in live.items() if queue in consumed)
            for queue in routed_queues()
        }
        missing = [queue for queue, hosts in queues.items() if not hosts]
        details: dict[str, Any] = {"workers": sorted(live), "queues": queues}
        if missing:
            details["error"] = "no live consumer for queue(s): " + ", ".join(missing)
        return details
