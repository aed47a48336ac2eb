"""Queue operations for the CLI: which routed queues lack a consumer, and queue lengths."""

from __future__ import annotations

from dataclasses import dataclass

from relay import catalog
from relay.errors import QueueCheckError
from relay.runtime import Runtime


@dataclass(frozen=True)
class QueueCheck:
    """Consumers found per routed queue."""

    consumers: dict[str, list[str]]

    @property
    def missing(self) -> list[str]:
        return [queue for queue, hosts in self.consumers.items() if not hosts]


def check_consumers(runtime: Runtime, timeout: float = 2.0, attempts: int = 1) -> QueueCheck:
    """Ask every worker (broadcast) which queues it consumes; authoritative, costs ``timeout``.

    Broadcast replies travel over pub/sub and a worker that is just starting may miss one, so a
    queue that looks unconsumed is asked about again, up to ``attempts`` broadcasts in all.
    """
    consumers: dict[str, set[str]] = {queue: set() for queue in catalog.routed_queues()}
    for _ in range(attempts):
        replies = runtime.celery.control.inspect(timeout=timeout).active_queues() or {}
        for host, queues in replies.items():
            for queue in queues:
                if queue["name"] in consumers:
                    consumers[queue["name"]].add(host)
        if all(consumers.values()):
            break
    return QueueCheck({q: sorted(h) for q, h in consumers.items()})


def require_consumers(runtime: Runtime, timeout: float = 2.0, attempts: int = 3) -> QueueCheck:
    """Like ``check_consumers`` but raise ``QueueCheckError`` naming each queue without one."""
    result = check_consumers(runtime, timeout, attempts)
    if result.missing:
        raise QueueCheckError(
            "no live consumer for routed queue(s): " + ", ".join(result.missing),
            details={"missing": result.missing},
        )
    return result


def queue_lengths(runtime: Runtime) -> dict[str, int]:
    """Messages waiting per catalogued queue."""
    return runtime.queues.lengths()
