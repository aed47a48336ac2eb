"""Test doubles for relay's core path, shipped with the package for users' tests too.

Everything here runs in one process with no Redis, no database and no broker:

- ``InMemoryBroker``: a ``TaskPublisher`` that keeps the messages it is given; ``join()`` runs
  every queued message (and whatever those publish in turn) through the app's middleware chain,
  exactly as a worker would, until nothing is left.
- ``memory_app()``: a ``RelayCelery`` app whose chain has the standard middlewares on in-memory
  stores (``InMemoryTaskRecords``, ``InMemoryEffects``), and whose tasks publish to the broker.
- ``InMemoryEventCounters`` for the event bus, ``InMemoryRunChannel`` and
  ``InMemoryRunControl`` for run streams, ``InMemoryAdmission``, ``InMemoryTenantQueue``.

Example::

    broker = InMemoryBroker()
    app = memory_app(broker)

    @app.task(base=ChainedTask, bind=True, name="tests.add")
    def add(self, a, b): return a + b

    broker.send_task("tests.add", args=[1, 2])
    assert broker.join() == {"...task id...": 3}
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from relay.events.counters import InMemoryEventCounters
from relay.models import TaskStatus, utcnow
from relay.resilience.pressure import Sample
from relay.retry import RetryDecision, Verdict
from relay.scheduling.admission import InMemoryAdmission
from relay.scheduling.tenant_queue_memory import InMemoryTenantQueue
from relay.streaming import InMemoryRunChannel, InMemoryRunControl
from relay.worker.celery_app import RelayCelery
from relay.worker.effects import EffectStore, IdempotentEffects
from relay.worker.lifecycle import RetryPolicyMiddleware, identity
from relay.worker.middleware import OutgoingMessage, TaskCall, TaskChain, TaskMiddleware
from relay.worker.standard import SentAt
from relay.worker.task import passthrough_errors

__all__ = [
    "InMemoryAdmission",
    "InMemoryBroker",
    "InMemoryEffects",
    "InMemoryEventCounters",
    "InMemoryRunChannel",
    "InMemoryRunControl",
    "InMemoryTaskRecords",
    "InMemoryTenantQueue",
    "Message",
    "memory_app",
    "ScriptedSampler",
]


@dataclass
class Message:
    """One published task message."""

    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    task_id: str
    queue: str | None
    headers: dict[str, Any]
    retries: int = 0


class InMemoryBroker:
    """A ``TaskPublisher`` that queues messages in memory; ``join()`` runs them."""

    def __init__(self) -> None:
        self.app: RelayCelery | None = None
        self.messages: list[Message] = []
        self.history: list[Message] = []
        self.down = False  # set to refuse sends like an unreachable broker
        self._lock = threading.Lock()

    def send_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> str:
        """Queue a message (Celery's ``send_task`` signature); returns its task id."""
        if self.down:
            raise ConnectionError("in-memory broker is down")
        message = Message(
            name=name,
            args=list(args or ()),
            kwargs=dict(kwargs or {}),
            task_id=str(options.get("task_id") or uuid.uuid4()),
            queue=options.get("queue"),
            headers=dict(options.get("headers") or {}),
            retries=int(options.get("retries") or 0),
        )
        if self.app is not None:
            outgoing = OutgoingMessage(
                name, message.task_id, message.queue, message.headers, message.args, message.kwargs
            )
            self.app.chain.before_publish(outgoing)
            message.headers = dict(outgoing.headers)
        with self._lock:
            self.messages.append(message)
            self.history.append(message)
        return message.task_id

    def pop(self) -> Message:
        """The oldest queued message (``IndexError`` when none is queued)."""
        with self._lock:
            return self.messages.pop(0)

    def join(self, *, limit: int = 10_000) -> dict[str, Any]:
        """Run queued messages through the app's chain until none is left.

        Returns each task id's result; a task that failed for good maps to its exception.
        Raises ``RuntimeError`` after ``limit`` messages (a task that keeps publishing).
        """
        if self.app is None:
            raise RuntimeError("InMemoryBroker.join() needs an app: build it with memory_app()")
        results: dict[str, Any] = {}
        for _ in range(limit):
            with self._lock:
                if not self.messages:
                    return results
                message = self.messages.pop(0)
            task = self.app.tasks[message.name]
            outcome = task.apply(
                args=message.args,
                kwargs=message.kwargs,
                task_id=message.task_id,
                headers=message.headers,
                retries=message.retries,
            )
            results[message.task_id] = outcome.result
        raise RuntimeError(f"join() ran {limit} messages and more keep coming")


class InMemoryTaskRecords(TaskMiddleware):
    """Task records and dead letters kept in memory (the ``TaskLifecycle`` of tests)."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.dead_letters: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def _record(self, call: TaskCall, status: TaskStatus, **fields: Any) -> None:
        with self._lock:
            row = self.records.setdefault(call.task_id, {"id": call.task_id})
            row.update(identity(call), status=status, updated_at=utcnow(), **fields)

    def on_start(self, call: TaskCall) -> None:
        self._record(call, TaskStatus.STARTED, started_at=utcnow())

    def on_success(self, call: TaskCall, result: Any) -> None:
        self._record(call, TaskStatus.SUCCESS, result=result, finished_at=utcnow())

    def on_retry(self, call: TaskCall, error: BaseException, decision: RetryDecision) -> None:
        self._record(call, TaskStatus.RETRY, error=f"{type(error).__name__}: {error}")

    def on_dead(self, call: TaskCall, error: BaseException, decision: RetryDecision) -> None:
        message = f"{type(error).__name__}: {error}"
        if decision.verdict is Verdict.FAILED:  # a failed outcome: recorded, never buried
            self._record(call, TaskStatus.FAILURE, error=message, finished_at=utcnow())
            return
        self._record(call, TaskStatus.DEAD, error=message, finished_at=utcnow())
        with self._lock:
            letter = {**identity(call), "task_id": call.task_id, "error": message}
            self.dead_letters.append({**letter, "reason": decision.reason})


class _Unit:
    """What ``effect()`` yields in memory: a unit of work with nothing to write to."""


class InMemoryEffects(EffectStore):
    """Processed keys in a set; a key counts once its effect's block finished without error."""

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self._lock = threading.Lock()

    @contextmanager
    def effect(self, task_name: str, key: str | None) -> Iterator[Any]:
        if key is not None:
            with self._lock:
                if key in self.keys:
                    yield None
                    return
        yield _Unit()
        if key is not None:
            with self._lock:
                self.keys.add(key)

    def processed(self, key: str) -> bool:
        with self._lock:
            return key in self.keys


@dataclass
class MemoryStores:
    """The in-memory stores behind a ``memory_app``."""

    records: InMemoryTaskRecords = field(default_factory=InMemoryTaskRecords)
    effects: InMemoryEffects = field(default_factory=InMemoryEffects)


def memory_app(
    broker: InMemoryBroker, *middlewares: TaskMiddleware, stores: MemoryStores | None = None
) -> RelayCelery:
    """A ``RelayCelery`` app for tests: tasks run through the standard chain on in-memory stores.

    ``middlewares`` are added innermost, after the standard ones. The app's own ``send_task``
    (``delay``, ``apply_async``, retries) publishes to ``broker``.
    """
    stores = stores or MemoryStores()
    chain = TaskChain(passthrough=passthrough_errors()).use(
        SentAt(),
        RetryPolicyMiddleware(),
        stores.records,
        IdempotentEffects(stores.effects),
        *middlewares,
    )
    app = _MemoryCelery(broker, chain)
    app.stores = stores
    broker.app = app
    return app


class _MemoryCelery(RelayCelery):
    """``RelayCelery`` whose messages go to an ``InMemoryBroker``."""

    def __init__(self, broker: InMemoryBroker, chain: TaskChain) -> None:
        super().__init__(
            {
                "broker_url": "memory://",
                "result_backend": "cache+memory://",
                "task_acks_late": True,
            },
            chain=chain,
        )
        self.broker = broker
        self.stores = MemoryStores()

    def send_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        return self.AsyncResult(self.broker.send_task(name, args, kwargs, **options))


class ScriptedSampler:
    """A resource sampler for tests: returns what it was last ``set`` to (all idle at first)."""

    def __init__(self, cpu: float = 0.1, memory: float = 0.1, disk: float = 0.1) -> None:
        self.sample = Sample(cpu, memory, disk)
        self.calls = 0

    def set(self, cpu: float = 0.1, memory: float = 0.1, disk: float = 0.1) -> None:
        self.sample = Sample(cpu, memory, disk)

    def __call__(self) -> Sample:
        self.calls += 1
        return self.sample
