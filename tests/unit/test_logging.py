from __future__ import annotations

import json
import logging

from relay.adapters.logs import JsonFormatter, redact


def _record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "relay.test", "levelname": "INFO", "msg": msg})
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_carry_an_action() -> None:
    line = JsonFormatter().format(_record("task done", action="task.succeeded", task_id="t1"))
    payload = json.loads(line)
    assert payload["action"] == "task.succeeded"
    assert payload["task_id"] == "t1"
    assert payload["message"] == "task done"


def test_secrets_never_reach_the_log() -> None:
    url = "postgresql+psycopg://relay:s3cret@db:5432/relay"
    assert redact(url) == "postgresql+psycopg://relay:***@db:5432/relay"
    line = JsonFormatter().format(_record(f"connecting to {url}", broker=url, api_key="abc"))
    assert "s3cret" not in line
    assert "abc" not in json.loads(line)["api_key"]
