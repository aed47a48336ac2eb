"""``Batcher.flush`` returns only once everything buffered before it has been written."""

from __future__ import annotations

import threading

from relay.background import Batcher


def test_flush_waits_for_a_batch_the_background_thread_is_writing() -> None:
    taken, release = threading.Event(), threading.Event()
    written: list[str] = []

    def apply(batch: dict[str, int]) -> None:
        taken.set()
        assert release.wait(10)
        written.extend(batch)

    batcher: Batcher[str, int] = Batcher("test", apply, interval=0.01)
    batcher.add("k", 1)  # starts the background thread, which takes the batch
    assert taken.wait(10)
    flushed = threading.Event()
    caller = threading.Thread(target=lambda: (batcher.flush(), flushed.set()))
    caller.start()
    # The batch is still being written: a flush that returned now would let its caller read
    # state without it (the caller of flush() relies on the write having landed).
    assert not flushed.wait(0.3)
    release.set()
    assert flushed.wait(10)
    caller.join(10)
    assert written == ["k"]


def test_a_discarded_key_is_not_applied_and_others_are() -> None:
    written: list[dict[str, int]] = []
    batcher: Batcher[str, int] = Batcher("test", written.append, interval=60)
    batcher.add("received", 1)
    batcher.add("kept", 2)
    assert batcher.discard("received")
    assert not batcher.discard("received")  # nothing left to drop
    batcher.flush()
    assert written == [{"kept": 2}]
    batcher.stop()
