"""``RelayTask`` and ``relay_task``: the base and decorator of relay's domain tasks.

A task is declared once, by its catalogue row::

    @relay_task(catalog.SEND_MAIL)
    def send(self: RelayTask, ...): ...

The name, queue, limits and retry policy come from the row; the body runs through the app's
middleware chain (``relay.worker``) with ``self.runtime`` at hand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import shared_task

from relay.catalog import TaskSpec
from relay.runtime import Runtime, current_runtime
from relay.worker.task import ChainedTask


class RelayTask(ChainedTask):
    """A task that runs in relay's runtime: settings, database, Redis, outbox, bus."""

    abstract = True

    @property
    def runtime(self) -> Runtime:
        """The runtime this execution runs in; ``TaskError`` outside a task execution."""
        return current_runtime()


def relay_task(spec: TaskSpec, **options: Any) -> Callable[[Callable[..., Any]], Any]:
    """Register the decorated function as the task ``spec`` names (bound: first arg ``self``)."""
    return shared_task(name=spec.name, base=RelayTask, bind=True, **options)  # type: ignore[no-any-return]
