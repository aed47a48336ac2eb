"""``relay.outbox.relay_pending``: beat's safety net for outbox rows nobody published.

A process that dies between its commit and its after-commit publish leaves the row ``pending``;
every few seconds this task republishes rows older than ``RELAY_CELERY_OUTBOX_GRACE_SECONDS``.
The grace period keeps it from racing the normal after-commit publish; if it does race, the
task's idempotency key makes the duplicate a no-op.

A row that cannot be published (``RELAY_CELERY_OUTBOX_MAX_ATTEMPTS`` failures of its own, or
older than ``RELAY_CELERY_OUTBOX_MAX_AGE``) becomes a dead letter, and an alert says so.
"""

from __future__ import annotations

from relay import catalog
from relay.monitoring.alerts import Alert, AlertManager, Severity
from relay.runtime import Runtime
from relay.tasks.base import RelayTask, relay_task


def relay_outbox(runtime: Runtime, alerts: AlertManager | None = None) -> int:
    """One relay pass with the configured limits; alerts on rows given up on."""
    settings = runtime.settings.celery

    def on_dead(ids: list[str]) -> None:
        manager = alerts or AlertManager.from_settings(runtime.settings, runtime.redis)
        manager.raise_alert(
            Alert(
                key="outbox.unpublishable",
                severity=Severity.ERROR,
                message=f"{len(ids)} outbox rows could not be published and are dead letters "
                "now (reason unpublishable; replay them once the cause is fixed)",
                details={"count": len(ids), "ids": ids[:20]},
            )
        )

    return runtime.outbox.relay_pending(
        grace_seconds=settings.outbox_grace_seconds,
        max_attempts=settings.outbox_max_attempts,
        max_age=settings.outbox_max_age,
        on_dead=on_dead,
    )


@relay_task(catalog.RELAY_OUTBOX)
def relay_pending(self: RelayTask) -> int:
    """Republish committed-but-unpublished outbox rows; returns how many were sent."""
    return relay_outbox(self.runtime)
