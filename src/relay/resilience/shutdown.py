"""The process's shutdown flag: set when a stop was asked, read by whatever should wind down.

A SIGTERM handler sets it; a running workflow run checks it between its stop polls and pauses
at its next node boundary, an SSE stream ends at its next event boundary with a ``retry:`` hint.
Setting it only assigns attributes, so it is safe from a signal handler (no lock is taken).
"""

from __future__ import annotations

import time


class Drain:
    """Whether this process is shutting down, since when and why."""

    def __init__(self) -> None:
        self._set = False
        self.reason: str | None = None
        self.since: float | None = None

    def begin(self, reason: str) -> None:
        """Mark the process as shutting down (the first reason is kept)."""
        if self._set:
            return
        self.reason = reason
        self.since = time.monotonic()
        self._set = True

    def is_set(self) -> bool:
        """Whether a shutdown began."""
        return self._set

    def reset(self) -> None:
        """Clear the flag (a forked child starts afresh; tests)."""
        self._set = False
        self.reason = None
        self.since = None


DRAIN = Drain()
"""This process's flag."""
