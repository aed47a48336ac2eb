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


def test_tokens_keys_and_dsns_are_masked() -> None:
    key = "relay-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v"
    text = f"Authorization: Bearer {key} via redis://:hunter2@127.0.0.1:6379/0 key={key}"
    masked = redact(text)
    assert key not in masked
    assert "hunter2" not in masked
    line = JsonFormatter().format(_record("connect", sentry_dsn="https://abc@o1.example/1"))
    assert json.loads(line)["sentry_dsn"] == "***"


def test_task_payload_is_hidden_in_celery_records() -> None:
    from relay.adapters.logs import TaskPayloadFilter

    context = {"id": "t1", "name": "relay.ping", "args": "['pw']", "return_value": "{'pw': 1}"}
    record = logging.makeLogRecord(
        {"name": "celery.app.trace", "msg": "Task %(name)s[%(id)s]: %(return_value)s"}
    )
    record.args = context
    record.data = context
    assert TaskPayloadFilter().filter(record)
    assert record.getMessage() == "Task relay.ping[t1]: <hidden>"
    assert "pw" not in JsonFormatter().format(record)
