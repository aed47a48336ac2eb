"""Structured logging: one JSON object per line with a stable ``action`` key.

Secrets never reach the log: passwords inside URLs are masked in every message and field.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from relay.adapters import routine_logs
from relay.config import Settings

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]+@", re.I)
_SECRET_KEYS = ("password", "secret", "token", "api_key", "authorization")
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def redact(text: str) -> str:
    """Mask the password part of any URL in ``text``."""
    return _URL_PASSWORD.sub(r"\g<scheme>\g<user>:***@", text)


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


def init_logging(settings: Settings) -> None:
    """Configure the root logger once per process (idempotent)."""
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
