"""Background work: one small supervised helper for every periodic thread relay runs.

``Periodic`` calls a function every ``interval`` seconds on a daemon thread. It starts on first
use in each process (a prefork child inherits no threads, so the first use after a fork starts a
new one), survives errors of the function (logged, retried next period), and stops on ``stop()``
with a final run when asked. ``Background`` is the set a runtime owns: ``Runtime.close()`` stops
them all, so no thread outlives its runtime and nothing is kept alive by ``atexit``.

``Batcher`` collects small writes and applies them together on a ``Periodic`` (task-record
transitions, outbox "sent" marks, metric increments). A failed flush keeps its items for the next.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

# This process's id, kept current across forks: ``Periodic.ensure`` runs on every buffered write
# and compares against it without a system call.
_PID = os.getpid()


def _forked() -> None:
    global _PID
    _PID = os.getpid()


os.register_at_fork(after_in_child=_forked)

K = TypeVar("K")
V = TypeVar("V")


class Periodic:
    """Runs ``tick`` every ``interval`` seconds on a thread of this process until stopped."""

    def __init__(self, name: str, tick: Callable[[], object], interval: float) -> None:
        self.name = name
        self.interval = interval
        self._tick = tick
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stopped = False

    @property
    def running(self) -> bool:
        """Whether this process has a live thread for it."""
        thread = self._thread
        return thread is not None and self._pid == _PID and thread.is_alive()

    def ensure(self) -> None:
        """Start the thread in this process if it is not running (cheap when it is)."""
        if self.running or self._stopped:
            return
        with self._lock:
            if self.running or self._stopped:
                return
            # After a fork the parent's thread and event do not belong to this process.
            self._stop = threading.Event()
            self._pid = _PID
            self._thread = threading.Thread(
                target=self._loop, args=(self._stop,), name=f"relay-{self.name}", daemon=True
            )
            self._thread.start()

    def stop(self, *, final_tick: bool = False, timeout: float | None = None) -> None:
        """Stop the thread; ``final_tick`` runs the function once more in the caller's thread."""
        self._stopped = True
        self._stop.set()
        thread, self._thread = self._thread, None
        if (
            thread is not None
            and self._pid == os.getpid()
            and thread.is_alive()
            and thread is not threading.current_thread()
        ):
            thread.join(self.interval + 1 if timeout is None else timeout)
        if final_tick:
            self._run_once()

    def _loop(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            self._run_once()

    def _run_once(self) -> None:
        try:
            self._tick()
        except Exception:
            log.exception(
                "background step failed", extra={"action": f"{self.name}.failed", "job": self.name}
            )


class Background:
    """The periodic helpers of one runtime; ``stop_all`` stops each (with its final tick)."""

    def __init__(self) -> None:
        self._jobs: list[Periodic] = []
        self._lock = threading.Lock()

    def periodic(self, name: str, tick: Callable[[], object], interval: float) -> Periodic:
        """A new ``Periodic`` owned by this set (not started until first ``ensure()``)."""
        job = Periodic(name, tick, interval)
        with self._lock:
            self._jobs.append(job)
        return job

    def names(self) -> list[str]:
        """Names of the helpers, in creation order."""
        with self._lock:
            return [job.name for job in self._jobs]

    def stop_all(self, timeout: float = 5.0) -> None:
        """Stop every helper, newest first (a writer stops before what it writes through)."""
        with self._lock:
            jobs = list(reversed(self._jobs))
        for job in jobs:
            job.stop(final_tick=True, timeout=timeout)


class Batcher(Generic[K, V]):
    """Buffers ``key -> value``; a later value for a key replaces or merges into the earlier one."""

    def __init__(
        self,
        name: str,
        apply: Callable[[dict[K, V]], None],
        *,
        interval: float = 0.1,
        merge: Callable[[V, V], V] | None = None,
        background: Background | None = None,
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
        owner = background if background is not None else Background()
        self._job = owner.periodic(name, self.flush, interval)

    def add(self, key: K, value: V) -> None:
        """Queue ``value`` for ``key``; it is applied within ``interval`` seconds."""
        with self._lock:
            old = self._pending.get(key)
            self._pending[key] = (
                value if old is None or self._merge is None else self._merge(old, value)
            )
        self._job.ensure()

    def discard(self, key: K) -> bool:
        """Drop what is buffered for ``key`` (not applied yet); True when something was."""
        with self._lock:
            return self._pending.pop(key, None) is not None

    def pending(self) -> int:
        """How many keys wait for the next flush."""
        with self._lock:
            return len(self._pending)

    def flush(self) -> int:
        """Apply everything buffered now; returns how many keys were applied."""
        with self._applying:
            with self._lock:
                batch, self._pending = self._pending, {}
            if not batch:
                return 0
            try:
                self._apply(batch)
            except Exception:
                log.exception("batched write failed", extra={"action": f"{self.name}.flush_failed"})
                with self._lock:
                    for key, value in batch.items():
                        # Newer values that arrived meanwhile win over the failed batch.
                        self._pending.setdefault(key, value)
                return 0
            return len(batch)

    def stop(self) -> None:
        """Stop the thread after a last flush."""
        self._job.stop(final_tick=True)
