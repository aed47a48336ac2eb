from __future__ import annotations

import io
import logging

from relay.adapters.logs import PlainFormatter
from relay.adapters.routine_logs import RoutineLogFilter, routine_task_names


def _record(level: int, msg: str, args: object = None, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"levelno": level, "levelname": logging.getLevelName(level),
                                    "msg": msg, "args": args, "name": "t", **extra})  # fmt: skip
    return record


def test_frequent_beat_tasks_are_routine_and_hourly_ones_are_not() -> None:
    names = routine_task_names()
    assert {"relay.outbox.relay_pending", "relay.scheduling.tick"} <= names
    assert "relay.maintenance.purge" not in names


def test_routine_info_lines_are_debug_lines() -> None:
    names = {"relay.scheduling.tick"}
    quiet = RoutineLogFilter(names, logging.INFO)
    beat = _record(
        logging.INFO, "Scheduler: Sending due task %s (%s)", ("tick", "relay.scheduling.tick")
    )
    received = _record(logging.INFO, "Task %(name)s received", {"name": "relay.scheduling.tick"})
    started = _record(logging.INFO, "task started", task="relay.scheduling.tick")
    assert not any(quiet.filter(r) for r in (beat, received, started))
    other = _record(logging.INFO, "task started", task="relay.workflow.run")
    failed = _record(logging.ERROR, "task failed", task="relay.scheduling.tick")
    assert quiet.filter(other)
    assert quiet.filter(failed)

    verbose = RoutineLogFilter(names, logging.DEBUG)
    assert verbose.filter(started)
    assert started.levelname == "DEBUG"


def test_plain_lines_name_the_task() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(PlainFormatter("%(levelname)s %(message)s"))
    handler.handle(_record(logging.INFO, "task started", task="relay.ping", task_id="abc"))
    assert stream.getvalue() == "INFO task started [task=relay.ping task_id=abc]\n"
