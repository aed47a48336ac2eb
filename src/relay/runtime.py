"""``Runtime``: every part of a relay process, built once by ``relay.create_runtime``.

Services, tasks and faces receive the runtime (or the parts they use) explicitly; nothing is
reached through module globals and nothing is attached afterwards. Its field types are the
ports (``RunChannel``, ``Admission``, ``TaskPublisher``...), so the in-memory versions in
``relay.testing`` fit the same fields.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import redis

from relay.adapters.embedded_redis import EmbeddedRedis
from relay.adapters.prometheus import Metrics
from relay.adapters.publisher import TaskPublisher
from relay.adapters.sql import Database
from relay.background import Background
from relay.config import Settings
from relay.errors import TaskError
from relay.events.bus import EventBus
from relay.events.outbox import Outbox
from relay.monitoring.errors_reporting import ErrorReporter
from relay.monitoring.health import HealthChecker
from relay.monitoring.levels import ReadinessChecker
from relay.monitoring.presence import WorkerPresence
from relay.monitoring.queues import QueueMonitor
from relay.monitoring.task_metrics import TaskStats
from relay.resilience.breaker import Breakers
from relay.resilience.pressure import PressureMonitor
from relay.resilience.spool import Spool
from relay.scheduling.admission import Admission
from relay.scheduling.dispatcher import FairDispatcher
from relay.streaming.streams import RunStreams
from relay.worker.deadletter import DeadLetters
from relay.worker.lifecycle import TaskLifecycle
from relay.worker.middleware import TaskChain

_CURRENT: ContextVar[Runtime | None] = ContextVar("relay_runtime", default=None)


@dataclass
class Runtime:
    """Everything a service or task needs from the outside world."""

    settings: Settings
    redis_url: str
    db: Database
    redis: redis.Redis
    celery: Any  # relay.worker.celery_app.RelayCelery (untyped base class)
    publisher: TaskPublisher
    chain: TaskChain
    metrics: Metrics
    background: Background
    dispatcher: FairDispatcher
    outbox: Outbox
    bus: EventBus
    lifecycle: TaskLifecycle
    task_stats: TaskStats
    admission: Admission
    streams: RunStreams
    presence: WorkerPresence
    queues: QueueMonitor
    health: HealthChecker
    errors: ErrorReporter
    readiness: ReadinessChecker
    embedded_redis: EmbeddedRedis | None = None
    # Circuit breakers of this process (the broker's is the Celery app's).
    breakers: Breakers = field(default_factory=Breakers)
    # The local spool (run events and counts kept on disk while Redis is away).
    spool: Spool | None = None
    # CPU, memory and var/ disk pressure (sheds low-priority queues, tightens admission).
    pressure: PressureMonitor | None = None
    _closed: bool = field(default=False, repr=False)

    @property
    def dead_letters(self) -> DeadLetters:
        """The dead-letter store."""
        return self.lifecycle.dead_letters

    @contextmanager
    def activate(self) -> Iterator[Runtime]:
        """Make this the current runtime of the calling context (tasks run inside one)."""
        token = _CURRENT.set(self)
        try:
            yield self
        finally:
            _CURRENT.reset(token)

    def close(self) -> None:
        """Stop background work (flushing what it buffered) and release connections.

        The embedded Redis stays up until its owner exits.
        """
        if self._closed:
            return
        self._closed = True
        self.bus.flush()
        self.background.stop_all()
        self.dispatcher.close()
        self.db.close()
        self.redis.close()


def current_runtime() -> Runtime:
    """The runtime of the running task (set by the runtime-context middleware)."""
    runtime = _CURRENT.get()
    if runtime is None:
        raise TaskError(
            "no relay runtime in this context: tasks run through a worker or apply() of an app "
            "built by relay.create_runtime()"
        )
    return runtime
