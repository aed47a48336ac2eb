"""The event bus and the outbox's publishing on in-memory doubles (no Redis, no database)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from relay.config import load_settings
from relay.errors import EventError
from relay.events import signals
from relay.events.bus import EventBus, EventContext
from relay.events.outbox import OutboxSender, outbox_row
from relay.events.payloads import AppDeleted
from relay.models import OutboxMessage
from relay.testing import InMemoryBroker, InMemoryEventCounters

SIGNAL = signals.app_was_deleted
PAYLOAD = AppDeleted(tenant_id="t-1", app_id="a-1")


@pytest.fixture
def bus(tmp_path: Path) -> EventBus:
    return EventBus(None, load_settings(var_dir=tmp_path), None, counters=InMemoryEventCounters())


def test_bus_counts_successes_and_isolated_failures_in_memory(bus: EventBus) -> None:
    calls: list[str] = []

    def fine(payload: AppDeleted, ctx: EventContext) -> None:
        calls.append("fine")

    def broken(payload: AppDeleted, ctx: EventContext) -> None:
        calls.append("broken")
        raise ValueError("boom")

    bus.connect(SIGNAL, fine)
    bus.connect(SIGNAL, broken)
    bus.emit(SIGNAL, PAYLOAD)
    bus.emit(SIGNAL, PAYLOAD)

    assert calls == ["fine", "broken", "fine", "broken"]
    rates = bus.error_rates()[SIGNAL.name]
    assert (rates["total"], rates["failures"], rates["error_rate"]) == (4, 2, 0.5)


def test_a_receiver_that_needs_the_outbox_fails_clearly_without_one(bus: EventBus) -> None:
    seen: list[BaseException] = []

    def enqueuer(payload: AppDeleted, ctx: EventContext) -> None:
        try:
            ctx.outbox  # noqa: B018 - the access is the test
        except EventError as exc:
            seen.append(exc)
            raise

    bus.connect(SIGNAL, enqueuer, critical=True)
    with pytest.raises(EventError, match="without an outbox"):
        bus.emit(SIGNAL, PAYLOAD)
    assert len(seen) == 1


class FairRoute:
    """Takes tenant rows of one queue, like the dispatcher's route."""

    def __init__(self) -> None:
        self.submitted: list[str] = []

    def accepts(self, row: OutboxMessage) -> bool:
        return bool(row.tenant_id) and row.queue == "dataset"

    def submit(self, row: OutboxMessage) -> None:
        self.submitted.append(row.id)


def test_outbox_rows_are_published_with_their_key_and_tenant() -> None:
    broker = InMemoryBroker()
    route = FairRoute()
    sender = OutboxSender(broker, route)
    plain = outbox_row("relay.ping", args=["hi"])
    tenant_work = outbox_row("relay.dataset.index_documents", args=["t", "d"], tenant_id="t")

    result = sender.send([plain, tenant_work])

    assert result.sent == [plain.id, tenant_work.id]
    assert route.submitted == [tenant_work.id], "tenant work on a fair queue takes the route"
    [message] = broker.messages
    assert (message.name, message.task_id, message.queue) == ("relay.ping", plain.id, "monitor")
    assert message.headers["idempotency_key"] == f"outbox:{plain.id}"


def test_a_broker_outage_stops_the_batch_and_reports_every_row() -> None:
    broker = InMemoryBroker()
    broker.down = True
    rows: list[Any] = [outbox_row("relay.ping") for _ in range(3)]

    result = OutboxSender(broker).send(rows)

    assert result.sent == []
    assert list(result.failed) == [r.id for r in rows]
    assert result.failed[rows[1].id] == "not attempted: broker unavailable"
