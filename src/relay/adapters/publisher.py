"""``TaskPublisher``: the port through which relay hands a task message to the broker.

A Celery app is one (``send_task``); ``relay.testing.InMemoryBroker`` is another. The outbox and
the fair dispatcher publish through it and know nothing else of the broker.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol


class TaskPublisher(Protocol):
    """Sends one task message (Celery's ``send_task`` signature)."""

    def send_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        """Publish task ``name``; options: ``task_id``, ``queue``, ``headers``, ``retries``."""
        ...


@contextmanager
def batched(options: Mapping[str, Any], messages: int) -> Iterator[None]:
    """Buffer the publishes of a ``one_connection`` run and send them together at the end.

    On Redis, kombu's publish batch queues each message's commands (the push, the task-sent
    event) in one pipeline: a run of a hundred messages is one round trip instead of a hundred.
    The buffer is sized so that nothing is sent before the end: a failure then means that none
    of the run can be counted as published (the caller treats every message as not sent, and
    the outbox republishes them; idempotency keys make a message that did arrive harmless).
    Other transports, and publishers without a producer, publish each message as it comes.
    """
    producer = options.get("producer")
    batch = getattr(producer, "batch", None)
    if batch is None or not getattr(producer, "supports_batch_publish", False):
        yield
        return
    # Commands per message: the push, its queue's expiry, the task-sent event; and some spare.
    with batch(max_size=4 * messages + 16):
        yield


@contextmanager
def one_connection(publisher: TaskPublisher) -> Iterator[dict[str, Any]]:
    """Options that make a run of ``send_task`` calls share one broker connection.

    A Celery app hands out one producer (connection and channel) for the whole run, instead of
    taking one from its pool and putting it back per message; other publishers (the in-memory
    broker, wrappers around the port) get no extra options and publish as usual.
    """
    acquire = getattr(publisher, "producer_or_acquire", None)
    if acquire is None:
        yield {}
        return
    with acquire() as producer:
        yield {"producer": producer}
