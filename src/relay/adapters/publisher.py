"""``TaskPublisher``: the port through which relay hands a task message to the broker.

A Celery app is one (``send_task``); ``relay.testing.InMemoryBroker`` is another. The outbox and
the fair dispatcher publish through it and know nothing else of the broker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
