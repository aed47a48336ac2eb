"""A real worker's log lines never carry task arguments, results or secrets.

Celery's worker logs "Task ... received" and "Task ... succeeded in ...: <result>" with the
arguments in the record's context; these tests run relay's ping task with a secret-looking
argument through a real worker and read every line the worker logged, as relay's JSON and plain
formatters write them.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from celery.contrib.testing.worker import start_worker

from relay.adapters.logs import JsonFormatter, PlainFormatter
from relay.runtime import Runtime
from relay.worker.hooks import install_worker_hooks

SECRET = "sk-live-7f3a9c2e1b5d4f6a8e0c"


@pytest.fixture
def log_lines() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """Everything logged at INFO and above, as JSON lines and as plain lines."""
    as_json, plain = io.StringIO(), io.StringIO()
    handlers = []
    for stream, formatter in (
        (as_json, JsonFormatter()),
        (plain, PlainFormatter("%(levelname)s %(name)s: %(message)s")),
    ):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        handler.setLevel(logging.INFO)
        handlers.append(handler)
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.INFO)
    for handler in handlers:
        root.addHandler(handler)
    try:
        yield as_json, plain
    finally:
        for handler in handlers:
            root.removeHandler(handler)
        root.setLevel(previous)


def test_worker_lines_carry_no_arguments_or_results(
    runtime: Runtime, log_lines: tuple[io.StringIO, io.StringIO]
) -> None:
    install_worker_hooks(runtime.celery, runtime.db, runtime.lifecycle)
    with start_worker(
        runtime.celery,
        pool="threads",
        concurrency=1,
        perform_ping_check=False,
        queues=["monitor"],
        loglevel="INFO",
        shutdown_timeout=30,
    ):
        result = runtime.celery.send_task("relay.ping", args=[SECRET], kwargs={})
        assert result.get(timeout=20)["pong"] == SECRET  # the task really saw the argument

    as_json, plain = (stream.getvalue() for stream in log_lines)
    messages = [json.loads(line)["message"] for line in as_json.splitlines()]
    # The lines exist (so the check below means something) ...
    assert any(f"[{result.id}] received" in m for m in messages), messages
    assert any(f"[{result.id}] succeeded in" in m for m in messages), messages
    # ... and hold neither the argument nor the result, in any field.
    assert SECRET not in as_json
    assert SECRET not in plain
    succeeded = next(m for m in messages if f"[{result.id}] succeeded in" in m)
    assert succeeded.endswith(": <hidden>")
