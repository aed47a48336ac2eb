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
