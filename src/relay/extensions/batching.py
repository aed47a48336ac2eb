"""``Batcher``: collect small writes and apply them together from a background thread.

Used where one write per event would cost more than the event itself (task-record transitions,
outbox "sent" marks). The thread starts on first use in each process, because a forked worker
child inherits no threads, and the buffer is flushed at exit. A failed flush keeps its items for
the next one.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")


class Batcher(Generic[K, V]):
    """Buffers ``key -> value``; a later value for a key replaces or merges into the earlier one."""

    def __init__(
        self,
        name: str,
        apply: Callable[[dict[K, V]], None],
        *,
        interval: float = 0.1,
        merge: Callable[[V, V], V] | None = None,
    ) -> None:
        self.name = name
        self.interval = interval
        self._apply = apply
        self._merge = merge
        self._pending: dict[K, V] = {}
        self._lock = threading.Lock()
        # Held while a batch is applied: a flush() returns only once what was buffered before
        # it, including a batch the background thread already took, has been written.
        self._applying = threading.Lock()
        self._pid = -1

    def add(self, key: K, value: V) -> None:
        """Queue ``value`` for ``key``; it is applied within ``interval`` seconds."""
        with self._lock:
            old = self._pending.get(key)
            self._pending[key] = (
                value if old is None or self._merge is None else self._merge(old, value)
            )
        if self._pid != os.getpid():
            self._start()

    def flush(self, *, quiet: bool = False) -> int:
        """Apply everything buffered now; returns how many keys were applied.

        ``quiet`` is for the flush at interpreter exit, when logging may already be torn down.
        """
        with self._applying:
            with self._lock:
                batch, self._pending = self._pending, {}
            if not batch:
                return 0
            try:
                self._apply(batch)
            except Exception:
                if not quiet:
                    log.exception(
                        "batched write failed", extra={"action": f"{self.name}.flush_failed"}
                    )
                with self._lock:
                    for key, value in batch.items():
                        # Newer values that arrived meanwhile win over the failed batch.
                        self._pending.setdefault(key, value)
                return 0
            return len(batch)

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
        thread = threading.Thread(target=self._run, name=f"relay-{self.name}", daemon=True)
        thread.start()
        atexit.register(self.flush, quiet=True)

    def _run(self) -> None:
        stop = threading.Event()
        while not stop.wait(self.interval):
            self.flush()
