"""Structured logging: one JSON object per line with a stable ``action`` key (and the trace and
span ids of the current span, when tracing is on).

Secrets never reach the log: passwords inside URLs, bearer tokens and relay API keys are masked
in every message and field, and fields named like secrets are dropped.

Task arguments and results never reach it either, Celery's own lines included. Celery's worker
logs "Task ... received" and "Task ... succeeded in ...s: <result>" (and failures, retries,
revocations) with the arguments' repr, and passes the same context as ``extra={"data": ...}``
for structured handlers. Two layers keep them out:

- every message relay publishes carries ``argsrepr``/``kwargsrepr`` headers of ``<hidden>``
  (Celery's documented way to hide arguments: the worker logs these instead of the arguments);
- a filter on Celery's task loggers replaces ``args``, ``kwargs`` and ``return_value`` in each
  record's context with ``<hidden>`` (the result has no ``argsrepr``, and messages published by
  other producers may lack the headers).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from celery.signals import before_task_publish

from relay.adapters import routine_logs
from relay.adapters.tracing import current_ids
from relay.config import Settings

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]+@", re.I)
_BEARER = re.compile(r"(?P<scheme>\bbearer\s+)[^\s\"',]+", re.I)
_API_KEY = re.compile(r"\brelay-[A-Za-z0-9_-]{16,}")
_SECRET_KEYS = ("password", "secret", "token", "api_key", "authorization", "dsn", "credential")
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

HIDDEN = "<hidden>"
"""What logs show instead of a task's arguments or result."""
TASK_PAYLOAD_KEYS = frozenset({"args", "kwargs", "return_value", "argsrepr", "kwargsrepr"})
# Loggers on which Celery's worker writes task lines with their context.
CELERY_TASK_LOGGERS = (
    "celery.app.trace",
    "celery.worker.strategy",
    "celery.worker.request",
    "celery.worker.consumer.consumer",
    "celery.worker.control",
)


def redact(text: str) -> str:
    """Mask URL passwords, bearer tokens and relay API keys in ``text``."""
    text = _URL_PASSWORD.sub(r"\g<scheme>\g<user>:***@", text)
    text = _BEARER.sub(r"\g<scheme>***", text)
    return _API_KEY.sub("relay-***", text)


def _clean(key: str, value: Any) -> Any:
    if any(word in key.lower() for word in _SECRET_KEYS):
        return "***"
    if isinstance(value, str):
        return redact(value)
    return value


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: ts, level, logger, action, message, then extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "action": getattr(record, "action", record.name),
            "message": redact(record.getMessage()),
        }
        ids = current_ids()
        if ids is not None:  # the line joins its trace in the tracing backend
            payload["trace_id"], payload["span_id"] = ids
        for key, value in vars(record).items():
            if key not in _RESERVED and key != "action" and not key.startswith("_"):
                payload[key] = _clean(key, value)
        if record.exc_info:
            payload["traceback"] = redact(self.formatException(record.exc_info))
        return json.dumps(payload, default=str)


# Which task a line is about, kept in the plain format too (never the task's arguments).
_PLAIN_CONTEXT = ("task", "task_id", "queue", "tenant_id")


class PlainFormatter(logging.Formatter):
    """Human-readable lines for a terminal, still redacted; names the task a line is about."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = [
            f"{key}={getattr(record, key)}"
            for key in _PLAIN_CONTEXT
            if getattr(record, key, None) is not None
        ]
        if context:
            head, newline, rest = line.partition("\n")  # before a traceback, if any
            line = f"{head} [{' '.join(context)}]{newline}{rest}"
        return redact(line)


def _hide(context: Mapping[Any, Any]) -> dict[Any, Any]:
    return {k: (HIDDEN if k in TASK_PAYLOAD_KEYS else v) for k, v in context.items()}


class TaskPayloadFilter(logging.Filter):
    """Replaces task arguments and results in Celery's log records with ``<hidden>``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, Mapping) and TASK_PAYLOAD_KEYS & set(record.args):
            record.args = _hide(record.args)
        data = getattr(record, "data", None)
        if isinstance(data, Mapping) and TASK_PAYLOAD_KEYS & set(data):
            record.data = _hide(data)
        return True


def hide_task_arguments(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """``before_task_publish``: the worker logs ``<hidden>`` in place of the arguments.

    A message relay's app published already says how many arguments it hides; that stays.
    """
    if isinstance(headers, dict):
        for key in ("argsrepr", "kwargsrepr"):
            if not str(headers.get(key) or "").endswith("hidden>"):
                headers[key] = HIDDEN


def init_task_log_hygiene() -> None:
    """Keep task arguments and results out of Celery's log lines (idempotent)."""
    before_task_publish.connect(hide_task_arguments, weak=False, dispatch_uid="relay.argsrepr")
    for name in CELERY_TASK_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, TaskPayloadFilter) for f in logger.filters):
            logger.addFilter(TaskPayloadFilter())


def init_logging(settings: Settings) -> None:
    """Configure the root logger once per process (idempotent)."""
    init_task_log_hygiene()
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_relay", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._relay = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    if settings.log.json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(PlainFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.setLevel(settings.log.level)
    routine_logs.install(handler, root.level)
    for noisy in ("urllib3", "httpx", "httpcore", "amqp", "kombu", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
