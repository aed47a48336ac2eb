"""Small parts of observability: stable worker names, task arguments kept out of Celery's logs,
and tracing switched on from OTEL_* settings (in a process of its own: the provider is global)."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys

from relay import catalog
from relay.adapters.logs import JsonFormatter, TaskPayloadFilter
from relay.worker.names import node_name, queue_label


def test_worker_names_depend_on_host_and_queue_set_only() -> None:
    assert node_name(catalog.queue_names(), "web1") == "relay-all@web1"
    assert node_name(["monitor", "mail"], "web1") == "relay-mail+monitor@web1"
    assert node_name(["mail", "monitor", "mail"], "web1") == node_name(["monitor", "mail"], "web1")
    many = catalog.queue_names()[:-1]
    label = queue_label(many)
    assert len(label) <= 48
    assert label == queue_label(list(reversed(many)))
    assert label != queue_label(many[:-1])


def test_celery_task_logs_lose_their_arguments() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.celery.app.trace")
    logger.addHandler(handler)
    logger.addFilter(TaskPayloadFilter())
    logger.propagate = False
    context = {"id": "t1", "name": "relay.mail.send", "args": "['s3cret']", "kwargs": "{'k': 1}"}
    try:
        logger.error("Task %(name)s[%(id)s] raised", context, extra={"data": context})
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    line = json.loads(stream.getvalue())
    assert line["message"] == "Task relay.mail.send[t1] raised"
    assert line["data"]["args"] == "<hidden>"
    assert line["data"]["kwargs"] == "<hidden>"
    assert "s3cret" not in stream.getvalue()


def test_otel_settings_switch_tracing_on_and_spans_are_exported() -> None:
    script = (
        "from relay.adapters.tracing import span\n"
        "from relay.config import load_settings\n"
        "from relay.monitoring.tracing import configure_tracing, flush_tracing\n"
        "assert configure_tracing(load_settings())\n"
        "with span('probe', {'relay.task': 'x'}):\n"
        "    pass\n"
        "flush_tracing()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "OTEL_"))}
    env.update(OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="relay-test")
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    exported = json.loads(done.stdout[done.stdout.index("{") :])
    assert exported["name"] == "probe"
    assert exported["resource"]["attributes"]["service.name"] == "relay-test"

    env.pop("OTEL_TRACES_EXPORTER")
    off = subprocess.run(
        [sys.executable, "-c", "from relay.config import load_settings\n"
         "from relay.monitoring.tracing import configure_tracing\n"
         "assert not configure_tracing(load_settings())\n"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert off.returncode == 0, off.stderr
