"""A send's rows go out in one broker batch; a batch that fails counts none of them as sent."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from relay.events.outbox import OutboxSender, outbox_row


class Batch:
    def __init__(self, producer: Producer, max_size: int) -> None:
        self.producer = producer
        self.max_size = max_size

    def __enter__(self) -> Batch:
        self.producer.open_batches.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.producer.open_batches.remove(self)
        if exc[0] is None:
            if self.producer.fail_flush:
                raise ConnectionError("Redis went away at the flush")
            self.producer.flushed.extend(self.producer.buffered)
        self.producer.buffered.clear()


class Producer:
    """A producer whose publishes are buffered until the batch's end, as kombu's Redis one."""

    supports_batch_publish = True

    def __init__(self, fail_flush: bool = False) -> None:
        self.fail_flush = fail_flush
        self.open_batches: list[Batch] = []
        self.buffered: list[str] = []
        self.flushed: list[str] = []
        self.sizes: list[int] = []

    def batch(self, max_size: int) -> Batch:
        self.sizes.append(max_size)
        return Batch(self, max_size)


class Publisher:
    def __init__(self, producer: Producer) -> None:
        self.producer = producer

    @contextmanager
    def producer_or_acquire(self) -> Iterator[Producer]:
        yield self.producer

    def send_task(self, name: str, args: Sequence[Any] | None = None, **options: Any) -> None:
        assert options["producer"] is self.producer
        assert self.producer.open_batches, "published outside the batch"
        self.producer.buffered.append(options["task_id"])


def _rows(count: int) -> list[Any]:
    return [outbox_row("relay.ping", args=[i], queue="monitor") for i in range(count)]


def test_rows_of_one_send_go_out_in_one_batch_in_order() -> None:
    producer = Producer()
    rows = _rows(5)
    result = OutboxSender(Publisher(producer)).send(rows)
    assert result.sent == [r.id for r in rows]
    assert producer.flushed == [r.id for r in rows]
    # Large enough that nothing is flushed before the end of the send.
    assert producer.sizes == [4 * 5 + 16]


def test_a_batch_that_fails_at_its_flush_counts_no_row_as_sent() -> None:
    rows = _rows(3)
    result = OutboxSender(Publisher(Producer(fail_flush=True))).send(rows)
    assert result.sent == []
    assert set(result.failed) == {r.id for r in rows}
    assert result.outage == {r.id for r in rows}
    assert "went away" in result.failed[rows[0].id]
