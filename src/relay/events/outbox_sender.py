"""``OutboxSender``: hands committed outbox rows to the broker, or to their route.

It knows nothing of the database: ``Outbox`` (after a commit) and its relay sweep give it rows
and mark the ones it reports as sent. The rows of one ``send()`` share one broker connection
and, on Redis, one kombu publish batch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kombu.exceptions import OperationalError

from relay.adapters.publisher import TaskPublisher, batched, one_connection
from relay.adapters.tracing import extract, inject, span
from relay.errors import InfrastructureError
from relay.models import OutboxMessage

log = logging.getLogger(__name__)

# A broker that refuses one message refuses the next one too: stop the batch, the relay retries.
_BROKER_DOWN = (InfrastructureError, OperationalError, ConnectionError, TimeoutError, OSError)


@dataclass
class SendResult:
    """What one ``send()`` did: ids handed to the broker, and the error of each row that was not."""

    sent: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    # Failed (or not attempted) because the broker was down: not the row's fault.
    outage: set[str] = field(default_factory=set)


class Route(Protocol):
    """Another way out for some rows (the tenant-fair dispatcher, for tenant work)."""

    def accepts(self, row: OutboxMessage) -> bool:
        """Whether this route publishes ``row``."""
        ...

    def submit(self, row: OutboxMessage) -> None:
        """Publish ``row`` (idempotent per row id)."""
        ...


class OutboxSender:
    """Hands outbox rows to the broker (or to their route); knows nothing of the database."""

    def __init__(self, publisher: TaskPublisher, route: Route | None = None) -> None:
        self.publisher = publisher
        self.route = route

    def send(self, rows: Sequence[OutboxMessage]) -> SendResult:
        """Publish ``rows`` in order; reports the ids sent and why each other row was not.

        The rows share one broker connection (no pool round per message) and, on Redis, one
        pipeline (``relay.adapters.publisher.batched``). Stops at the first broker connection
        error (the rest would fail the same way after the same timeouts, inside the caller's
        commit); those rows stay pending for the relay.
        """
        result = SendResult()
        if not rows:
            return result
        try:
            with one_connection(self.publisher) as options, batched(options, len(rows)):
                self._send_each(rows, options, result)
        except Exception as exc:
            # The buffered publishes were not confirmed: none of them counts as sent.
            log.exception(
                "outbox publish batch failed",
                extra={"action": "outbox.publish_failed", "count": len(result.sent)},
            )
            error = f"{type(exc).__name__}: {exc}"[:1000]
            for row_id in result.sent:
                result.failed[row_id] = error
                result.outage.add(row_id)
            result.sent = []
        return result

    def _send_each(
        self, rows: Sequence[OutboxMessage], options: Mapping[str, Any], result: SendResult
    ) -> None:
        for index, row in enumerate(rows):
            try:
                self._publish(row, options)
            except Exception as exc:
                log.exception(
                    "outbox publish failed",
                    extra={"action": "outbox.publish_failed", "outbox_id": row.id},
                )
                result.failed[row.id] = f"{type(exc).__name__}: {exc}"[:1000]
                if isinstance(exc, _BROKER_DOWN):
                    result.outage.add(row.id)
                    for rest in rows[index + 1 :]:
                        result.failed[rest.id] = "not attempted: broker unavailable"
                        result.outage.add(rest.id)
                    break
                continue
            result.sent.append(row.id)

    def _publish(self, row: OutboxMessage, options: Mapping[str, Any]) -> None:
        # The span joins the trace of whoever enqueued the row (its headers carry that context),
        # also when the relay republishes it later from beat.
        attributes = {
            "relay.task": row.task_name,
            "relay.task_id": row.id,
            "relay.queue": row.queue,
        }
        with span(
            "outbox.publish",
            attributes,
            kind="producer",
            parent=extract(row.headers),
            link_current=True,
        ):
            if self.route is not None and self.route.accepts(row):
                # Tenant work on a fairly scheduled queue waits its turn in the dispatcher.
                self.route.submit(row)
                return
            headers = dict(row.headers)
            inject(headers)
            self.publisher.send_task(
                row.task_name,
                args=list(row.args),
                kwargs=dict(row.kwargs),
                task_id=row.id,
                queue=row.queue,
                headers=headers,
                **options,
            )
