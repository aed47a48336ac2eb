"""Quiet logs at rest: the routine periodic tasks' INFO lines are DEBUG lines.

Beat sends the outbox relay and the scheduling tick every 5 s, and each send logs about five INFO
lines (beat's "Sending due task", the worker's "received", relay's "task started/succeeded" and
Celery's "succeeded in"), so a stack at rest scrolls its own banner away. This filter demotes
those lines, for the frequent beat entries only, to DEBUG (shown with RELAY_LOG_LEVEL=DEBUG);
their warnings and errors keep their level.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import timedelta

from relay.catalog import BEAT

# Beat entries at most this far apart are routine; hourly and daily clean-ups stay visible.
ROUTINE_INTERVAL = timedelta(minutes=1)


class RoutineLogFilter(logging.Filter):
    """Turns INFO records about ``task_names`` into DEBUG records (dropped below ``level``)."""

    def __init__(self, task_names: Iterable[str], level: int) -> None:
        super().__init__()
        self.task_names = frozenset(task_names)
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not self._routine(record):
            return True
        if self.level > logging.DEBUG:
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True

    def _routine(self, record: logging.LogRecord) -> bool:
        if getattr(record, "task", None) in self.task_names:
            return True
        args = record.args
        values = args.values() if isinstance(args, Mapping) else (args or ())
        return any(isinstance(value, str) and value in self.task_names for value in values)


def routine_task_names() -> frozenset[str]:
    """Tasks of beat entries that run at least once a minute."""
    return frozenset(entry.task for entry in BEAT if entry.every <= ROUTINE_INTERVAL)


def install(handler: logging.Handler, level: int) -> None:
    """Add the filter to ``handler`` (once; a later call updates the level)."""
    for existing in handler.filters:
        if isinstance(existing, RoutineLogFilter):
            existing.level = level
            return
    handler.addFilter(RoutineLogFilter(routine_task_names(), level))
