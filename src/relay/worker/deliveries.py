"""Deliveries that never ended count as attempts: a task that kills its worker reaches the dead
letters instead of looping.

Celery's attempt number is ``request.retries``, which only a retry the task asked for raises. A
message whose worker dies mid-task (SIGKILL, OOM, a segfault in a native library, a hard time
limit) is delivered again with the same number, forever. relay counts, per task id and in Redis
(``relay:deliveries:<id>``), the deliveries that started and never ended, and adds them to the
attempt number; once they reach the task's ``max_attempts`` the delivery is not run but
dead-lettered (reason ``worker_lost``).

Counting costs nothing on the common path. A first delivery (the broker's ``redelivered`` flag
unset) writes no count: if its pool process dies, the worker's main process, which outlives it,
counts the death (``CountedRequest``: a lost worker or a hard time limit). A redelivered message
is counted by the delivery itself (``DeliveryGuard``): one added when it starts, taken back when it
ends with any outcome, so what is left when the next delivery starts are the ones that died with
their whole worker. Eager executions (``apply()``) have no main process and always count.

The one death not counted is a first delivery lost together with its worker's main process (the
whole worker SIGKILLed): such a task may run once more than ``max_attempts`` before it is buried.
When Redis cannot be reached the count is skipped (the task runs on ``request.retries`` alone): a
counter must never be the reason a task does not run.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

import redis
from billiard.exceptions import WorkerLostError
from celery.worker.request import Request

from relay.errors import TaskError
from relay.resilience.outages import is_outage
from relay.retry import RetryPolicy
from relay.worker.lifecycle import TaskLifecycle
from relay.worker.middleware import Proceed, TaskCall, TaskMiddleware

log = logging.getLogger(__name__)

_COUNTED = "relay.delivery_counted"
# Long enough for any retry schedule (the infrastructure policy spans about ten minutes).
_TTL = 7 * 24 * 3600
_END = """
local left = redis.call('DECR', KEYS[1])
if left <= 0 then redis.call('DEL', KEYS[1]) end
return left
"""


class DeliveriesExhausted(TaskError):
    """Earlier deliveries of this task died with their worker as often as it may run."""

    code = "worker_lost"
    dead_reason = "worker_lost"


class DeliveryCounts(Protocol):
    def begin(self, task_id: str) -> int:
        """Count a delivery that starts; returns the unfinished deliveries, this one included."""

    def end(self, task_id: str) -> None:
        """A delivery ended with an outcome."""


class RedisDeliveryCounts:
    """Unfinished deliveries per task id in Redis (``relay:deliveries:<id>``)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._end = client.register_script(_END)

    @staticmethod
    def key(task_id: str) -> str:
        return f"relay:deliveries:{task_id}"

    def begin(self, task_id: str) -> int:
        with self.client.pipeline() as pipe:
            pipe.incr(self.key(task_id))
            pipe.expire(self.key(task_id), _TTL)
            count, _ = pipe.execute()
        return int(count)

    def end(self, task_id: str) -> None:
        # One round trip: the decrement, and the key's removal once nothing is left.
        self._end(keys=[self.key(task_id)])


class MemoryDeliveryCounts:
    """In-process counts (unit tests, eager apps)."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def begin(self, task_id: str) -> int:
        with self._lock:
            self._counts[task_id] = self._counts.get(task_id, 0) + 1
            return self._counts[task_id]

    def end(self, task_id: str) -> None:
        with self._lock:
            left = self._counts.get(task_id, 0) - 1
            if left > 0:
                self._counts[task_id] = left
            else:
                self._counts.pop(task_id, None)


def redelivered(call: TaskCall) -> bool:
    """Whether the broker delivered this message before (restored, requeued or handed back)."""
    info = getattr(call.request, "delivery_info", None) or {}
    return bool(info.get("redelivered")) or bool(call.headers.get("redelivered"))


class DeliveryGuard(TaskMiddleware):
    """Adds deliveries that died to the attempt number; refuses to run past ``max_attempts``.

    Registered inside the fair lease, so a copy the scheduler drops is not counted. A first
    delivery on a worker is not counted here (its main process counts its death, see
    ``CountedRequest``); a redelivered one and an eager execution are.
    """

    def __init__(self, counts: DeliveryCounts) -> None:
        self.counts = counts

    def count_death(self, task_id: str) -> None:
        """A delivery of ``task_id`` that counted nothing itself died (the main process saw it)."""
        try:
            self.counts.begin(task_id)
        except Exception as exc:
            if not is_outage(exc):
                raise
            log.warning(
                "lost delivery not counted (Redis unavailable)",
                extra={"action": "task.deliveries_unavailable", "task_id": task_id},
            )

    def around(self, call: TaskCall, proceed: Proceed) -> Any:
        if not call.eager and not redelivered(call):
            return proceed()
        try:
            unfinished = self.counts.begin(call.task_id)
        except Exception as exc:
            if not is_outage(exc):
                raise
            log.warning(
                "delivery count unavailable; attempts come from retries only",
                extra={"action": "task.deliveries_unavailable", "task_id": call.task_id},
            )
            return proceed()
        call.context[_COUNTED] = True
        lost = unfinished - 1
        if lost > 0:
            call.attempt += lost
            policy: RetryPolicy = call.task.retry_policy or call.task.spec.retry
            if lost >= policy.max_attempts:
                raise DeliveriesExhausted(
                    f"{lost} deliveries of this task ended with their worker "
                    f"(it may run {policy.max_attempts} times)"
                )
        return proceed()

    def _end(self, call: TaskCall) -> None:
        if not call.context.pop(_COUNTED, False):
            return
        try:
            self.counts.end(call.task_id)
        except Exception as exc:
            if not is_outage(exc):
                raise
            log.warning(
                "delivery count not closed (Redis unavailable)",
                extra={"action": "task.deliveries_unavailable", "task_id": call.task_id},
            )

    def on_success(self, call: TaskCall, result: Any) -> None:
        self._end(call)

    def on_retry(self, call: TaskCall, error: BaseException, decision: Any) -> None:
        self._end(call)

    def on_dead(self, call: TaskCall, error: BaseException, decision: Any) -> None:
        self._end(call)

    def on_abandon(self, call: TaskCall, reason: BaseException) -> None:
        self._end(call)


class CountedRequest(Request):  # type: ignore[misc]
    """The worker main process's view of a delivery: counts the death of a pool process that ran
    a first delivery (which counted nothing itself), so the next delivery sees it; and, once the
    delivery ended, withdraws its RECEIVED record if that is still buffered (see
    ``TaskLifecycle.delivered``)."""

    _death_counted = False

    def on_success(self, failed__retval__runtime: Any, **kwargs: Any) -> None:
        # Every outcome the pool process reports (success, failure, retry) arrives here.
        self._ended()
        super().on_success(failed__retval__runtime, **kwargs)

    def _middleware(self, kind: type[Any]) -> Any:
        """The task's app's middleware of type ``kind`` (``None`` on a plain Celery app)."""
        chain = getattr(self.task.app, "chain", None)
        return chain.find(kind) if chain is not None else None

    def _ended(self) -> None:
        lifecycle = self._middleware(TaskLifecycle)
        if lifecycle is not None:
            lifecycle.delivered(self.id)

    def on_timeout(self, soft: bool, timeout: float) -> None:
        if not soft:  # the pool process is killed: a hard time limit ends no delivery
            self._count_death()
        super().on_timeout(soft, timeout)

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> None:
        exc = getattr(exc_info, "exception", None)
        if isinstance(getattr(exc, "exc", exc), WorkerLostError):  # may come wrapped
            self._count_death()
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)

    def _count_death(self) -> None:
        if self._death_counted or self.delivery_info.get("redelivered"):
            return  # a redelivered message counted its own start
        self._death_counted = True
        guard = self._middleware(DeliveryGuard)
        if guard is not None:
            guard.count_death(self.id)
