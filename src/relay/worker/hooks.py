"""What makes a Celery worker a relay worker.

``PresenceStep`` is a consumer bootstep: once the worker consumes its queues it announces them
through a presence key (refreshed by a heartbeat thread) and withdraws it at a clean shutdown.
``install_worker_hooks`` drops database connections a prefork child inherited from its parent,
records RECEIVED as soon as a message is taken off its queue, flushes a child's buffers when
it exits, and makes SIGTERM a graceful stop (``relay.worker.shutdown``).
"""

from __future__ import annotations

import os
from typing import Any

from celery import bootsteps, signals

from relay.adapters.prometheus import process_exited
from relay.adapters.sql import Database
from relay.monitoring.errors_reporting import flush_reports
from relay.monitoring.presence import PresenceHeartbeat
from relay.monitoring.tracing import flush_tracing
from relay.scheduling.dispatcher import HEADER as FAIR_HEADER
from relay.worker.lifecycle import TaskLifecycle
from relay.worker.rejects import install_reject_hooks
from relay.worker.shutdown import install_shutdown_hooks


def consumed_queues(consumer: Any) -> list[str]:
    """Names of the queues a worker consumer reads."""
    return sorted(q.name for q in consumer.task_consumer.queues)


class PresenceStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Announce the worker's queues while it consumes them."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, consumer: Any, **kwargs: Any) -> None:
        super().__init__(consumer, **kwargs)
        self.heartbeat: PresenceHeartbeat | None = None

    def start(self, consumer: Any) -> None:
        presence = getattr(consumer.app, "presence", None)
        if presence is None:  # a plain Celery app: nothing to announce
            return
        self.heartbeat = PresenceHeartbeat(
            presence, consumer.hostname, consumed_queues(consumer), consumer.app.background
        )
        self.heartbeat.start()

    def stop(self, consumer: Any) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
            self.heartbeat = None

    shutdown = stop


def install_worker_hooks(
    celery: Any, db: Database, lifecycle: TaskLifecycle, *, shutdown_grace: float = 30.0
) -> None:
    """Connect the worker hooks of the app ``celery`` (idempotent per app)."""

    def on_process_init(**_: Any) -> None:
        db.after_fork()

    def on_process_shutdown(**_: Any) -> None:
        # A pool child exits: write what its helpers buffered (records, stats) before it goes.
        celery.background.stop_all(timeout=2.0)
        # A pool child leaves by os._exit: no atexit hook sends its spans or reports.
        flush_tracing(timeout_ms=2000)
        flush_reports(timeout=2.0)
        process_exited(os.getpid())  # its live gauges stop counting; counters stay summed

    def on_received(request: Any = None, **_: Any) -> None:
        # In the worker's main process, as soon as the message is taken off the queue.
        if request is None or getattr(request, "app", celery) is not celery:
            return
        if (getattr(request, "request_dict", None) or {}).get(FAIR_HEADER) is not None:
            # Released by the fair scheduler, whose lease tracks it: only the copy the scheduler
            # lets run is recorded (at start), so a dropped copy leaves no RECEIVED behind.
            return
        lifecycle.received(
            task_id=request.id,
            name=request.name,
            queue=(request.delivery_info or {}).get("routing_key") or "",
            attempt=int(request.request_dict.get("retries") or 0) + 1,
            worker=request.hostname or "",
        )

    install_reject_hooks(celery, lifecycle)
    install_shutdown_hooks(celery, shutdown_grace)
    uid = f"relay-{id(celery)}"
    signals.worker_process_init.connect(on_process_init, weak=False, dispatch_uid=uid + "-init")
    signals.task_received.connect(on_received, weak=False, dispatch_uid=uid + "-received")
    signals.worker_process_shutdown.connect(
        on_process_shutdown, weak=False, dispatch_uid=uid + "-shutdown"
    )
