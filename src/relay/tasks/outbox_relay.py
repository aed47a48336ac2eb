"""``relay.outbox.relay_pending``: beat's safety net for outbox rows nobody published.

A process that dies between its commit and its after-commit publish leaves the row ``pending``;
every few seconds this task republishes rows older than ``RELAY_CELERY_OUTBOX_GRACE_SECONDS``.
The grace period keeps it from racing the normal after-commit publish; if it does race, the
task's idempotency key makes the duplicate a no-op.
"""

from __future__ import annotations

from relay import catalog
from relay.tasks.base import RelayTask, relay_task


@relay_task(catalog.RELAY_OUTBOX)
def relay_pending(self: RelayTask) -> int:
    """Republish committed-but-unpublished outbox rows; returns how many were sent."""
    runtime = self.runtime
    return runtime.outbox.relay_pending(grace_seconds=runtime.settings.celery.outbox_grace_seconds)
