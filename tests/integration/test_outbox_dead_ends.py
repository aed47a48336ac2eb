"""Outbox rows that cannot be published end as dead letters (after their attempts or their age)
with an alert; a broker outage does not use up a row's attempts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select

from relay.errors import BrokerUnavailable
from relay.events.outbox import Outbox, outbox_row
from relay.models import DeadLetter, OutboxMessage, OutboxStatus
from relay.monitoring.alerts import Alert, AlertManager, MemoryDeduplicator
from relay.runtime import Runtime
from relay.tasks.outbox_relay import relay_outbox


class Refusing:
    """A broker that refuses every message with ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def send_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        raise self.error


class Capture:
    name = "capture"

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.alerts.append(alert)


def _row(runtime: Runtime) -> str:
    row = outbox_row("relay.ping", args=["x"], queue="monitor")
    with runtime.db.transaction() as session:
        session.add(row)  # added directly: no after-commit publish, the relay's job
    return row.id


def _status(runtime: Runtime, row_id: str) -> str:
    with runtime.db.session() as session:
        row = session.get(OutboxMessage, row_id)
        assert row is not None
        return row.status


def _letters(runtime: Runtime) -> list[DeadLetter]:
    with runtime.db.session() as session:
        return list(session.scalars(select(DeadLetter)))


def test_a_row_the_broker_refuses_becomes_a_dead_letter_after_its_attempts(
    runtime: Runtime,
) -> None:
    outbox = Outbox(runtime.db, Refusing(ValueError("message too large")))
    row_id = _row(runtime)
    dead: list[list[str]] = []
    for _ in range(2):
        outbox.relay_pending(grace_seconds=0, max_attempts=3, on_dead=dead.append)
    assert _status(runtime, row_id) == OutboxStatus.PENDING
    outbox.relay_pending(grace_seconds=0, max_attempts=3, on_dead=dead.append)
    assert _status(runtime, row_id) == OutboxStatus.DEAD
    assert dead == [[row_id]]
    (letter,) = _letters(runtime)
    assert letter.reason == "unpublishable"
    assert letter.task_id == row_id
    assert "message too large" in letter.error
    # Given up on means out of the relay's way; a replay enqueues it again.
    assert outbox.relay_pending(grace_seconds=0, max_attempts=3, on_dead=dead.append) == 0
    assert dead == [[row_id]]
    runtime.lifecycle.dead_letters.replay(letter.id)


def test_a_broker_outage_uses_no_attempts_but_the_age_limit_holds(runtime: Runtime) -> None:
    outbox = Outbox(runtime.db, Refusing(BrokerUnavailable("connection refused")))
    row_id = _row(runtime)
    for _ in range(5):
        outbox.relay_pending(grace_seconds=0, max_attempts=3, max_age=3600)
    assert _status(runtime, row_id) == OutboxStatus.PENDING
    assert _letters(runtime) == []
    outbox.relay_pending(grace_seconds=0, max_attempts=3, max_age=0)
    assert _status(runtime, row_id) == OutboxStatus.DEAD


def test_the_beat_task_alerts_on_rows_given_up_on(runtime: Runtime) -> None:
    row_id = _row(runtime)
    with runtime.db.transaction() as session:
        row = session.get(OutboxMessage, row_id)
        assert row is not None
        row.created_at = row.created_at.replace(year=row.created_at.year - 1)
    capture = Capture()
    manager = AlertManager([capture], MemoryDeduplicator())
    runtime.settings = runtime.settings.model_copy(
        update={"celery": runtime.settings.celery.model_copy(update={"outbox_grace_seconds": 0})}
    )
    # Its publish fails once on purpose: the age limit applies to rows that failed to publish.
    runtime.outbox.sender.publisher = Refusing(ValueError("refused"))
    relay_outbox(runtime, manager)
    (alert,) = capture.alerts
    assert alert.key == "outbox.unpublishable"
    assert alert.details["ids"] == [row_id]
