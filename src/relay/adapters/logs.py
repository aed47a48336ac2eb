"""Structured logging: one JSON object per line with a stable ``action`` key (and the trace and
span ids of the current span, when tracing is on).

Secrets never reach the log: passwords inside URLs are masked in every message and field.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from relay.adapters.tracing import current_ids
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
        ids = current_ids()
        if ids is not None:  # the line joins its trace in the tracing backend
            payload["trace_id"], payload["span_id"] = ids
        for key, value in vars(record).items():
            if key not in _RESERVED and key != "action" and not key.startswith("_"):
                payload[key] = _clean(key, value)
        if record.exc_info:
            payload["traceback"] = redact(self.formatException(record.exc_info))
        return json.dumps(payload, default=str)


class HideTaskArguments(logging.Filter):
    """Celery's task logs (``celery.app.trace``) carry the task's arguments in ``data``: they may
    hold user content or secrets, so they are replaced before any handler formats the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        data = getattr(record, "data", None)
        if isinstance(data, dict):
            hidden = {k: ("<hidden>" if k in ("args", "kwargs") else v) for k, v in data.items()}
            record.data = hidden
            if isinstance(record.args, dict):
                record.args = hidden
        return True


class PlainFormatter(logging.Formatter):
    """Human-readable lines for a terminal, still redacted."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


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
    trace_log = logging.getLogger("celery.app.trace")
    if not any(isinstance(f, HideTaskArguments) for f in trace_log.filters):
        trace_log.addFilter(HideTaskArguments())
    for noisy in ("urllib3", "httpx", "httpcore", "amqp", "kombu"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
