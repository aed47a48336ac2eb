"""Cancellation shared by a run, its iterations and its running nodes."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

from relay.workflow.errors import NodeStopped


class StopToken:
    """A flag a run sets to stop; nodes poll it or wait on it instead of sleeping.

    Tokens form a tree: setting a token sets all of its children, so stopping a run reaches
    every iteration item, while a failing iteration can stop its own items without stopping
    the run.
    """

    def __init__(self, parent: StopToken | None = None) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._children: weakref.WeakSet[StopToken] = weakref.WeakSet()
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._next_id = 0
        self.reason: str | None = None
        if parent is not None:
            parent._adopt(self)

    def _adopt(self, child: StopToken) -> None:
        with self._lock:
            self._children.add(child)
            already = self._event.is_set()
        if already:
            child.set(self.reason)

    def child(self) -> StopToken:
        """A token that is set when this one is, and can also be set on its own."""
        return StopToken(self)

    def set(self, reason: str | None = None) -> None:
        """Ask everything holding this token (or a child of it) to stop."""
        with self._lock:
            if self._event.is_set():
                return
            self.reason = reason
            self._event.set()
            children = list(self._children)
            callbacks = list(self._callbacks.values())
        for child in children:
            child.set(reason)
        for callback in callbacks:
            callback()

    def is_set(self) -> bool:
        """Whether a stop was requested."""
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, waking at once on stop; True when stopped."""
        if timeout <= 0:
            return self._event.is_set()
        return self._event.wait(timeout)

    def raise_if_set(self) -> None:
        """Raise :class:`NodeStopped` when a stop was requested."""
        if self._event.is_set():
            raise NodeStopped(self.reason or "stopped")

    def on_set(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (from the stopping thread) when set; returns an unsubscribe."""
        with self._lock:
            key = self._next_id
            self._next_id += 1
            self._callbacks[key] = callback
            already = self._event.is_set()
        if already:
            callback()

        def unsubscribe() -> None:
            with self._lock:
                self._callbacks.pop(key, None)

        return unsubscribe
