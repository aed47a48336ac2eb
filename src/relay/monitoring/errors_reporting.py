"""Error reporting to Sentry (``RELAY_SENTRY_DSN``, the ``sentry`` extra) for API, worker and beat.

What is reported: unhandled API errors (the API's catch-all handler), dead-lettered tasks and
failed workflow runs (a task middleware), and crashes of threads and processes (sentry-sdk's
default integrations). Error *logs* are not turned into events (they are breadcrumbs only): every
failure that matters is reported once, from the place that knows its tenant and task.

What is never sent: task arguments, request bodies, cookies, headers that authenticate, local
variables of frames, or passwords inside URLs. ``scrub_event`` enforces that on every event, so a
future call site cannot leak them either.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from relay.adapters.logs import redact
from relay.config import Settings

try:
    import sentry_sdk
    from sentry_sdk.integrations.logging import LoggingIntegration
except ImportError:  # pragma: no cover - the sentry extra is not installed
    sentry_sdk = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

# Request headers that are kept (everything else, Authorization and cookies included, is dropped).
_SAFE_HEADERS = frozenset({"content-type", "content-length", "user-agent", "accept", "host"})
_SECRET_WORDS = ("password", "secret", "token", "api_key", "apikey", "authorization", "dsn")


class ErrorReporter:
    """Sends failures to Sentry when a DSN is configured; does nothing otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sentry_sdk is not None

    def capture(
        self,
        error: BaseException,
        *,
        tags: Mapping[str, Any],
        fingerprint: list[str] | None = None,
        level: str = "error",
    ) -> str | None:
        """Report ``error`` with ``tags`` (no arguments, no payloads); returns the event id."""
        if not self.enabled:
            return None
        with sentry_sdk.new_scope() as scope:
            for key, value in tags.items():
                if value is not None:
                    scope.set_tag(key, str(value))
            scope.level = level
            if fingerprint:
                scope.fingerprint = fingerprint
            return sentry_sdk.capture_exception(error, scope=scope)

    def flush(self, timeout: float = 2.0) -> None:
        """Send what is queued (before a pool child or a command exits)."""
        if self.enabled:
            sentry_sdk.flush(timeout=timeout)


def flush_reports(timeout: float = 2.0) -> None:
    """Send queued reports of this process now (a pool child about to exit)."""
    if sentry_sdk is not None and sentry_sdk.get_client().is_active():
        sentry_sdk.flush(timeout=timeout)


def init_error_reporting(settings: Settings) -> ErrorReporter:
    """Initialise sentry-sdk once per process from ``settings.sentry``; the reporter to use."""
    dsn = settings.sentry.dsn
    if not dsn:
        return ErrorReporter(enabled=False)
    if sentry_sdk is None:
        log.warning(
            "RELAY_SENTRY_DSN is set but the sentry extra is not installed",
            extra={"action": "sentry.unavailable"},
        )
        return ErrorReporter(enabled=False)
    client = sentry_sdk.get_client()
    if client.is_active() and str(client.dsn) == dsn:
        return ErrorReporter(enabled=True)  # another runtime of this process initialised it
    sentry_sdk.init(
        dsn=dsn,
        environment=settings.sentry.environment,
        release=settings.sentry.release,
        traces_sample_rate=settings.sentry.traces_sample_rate,
        include_local_variables=False,
        max_request_body_size="never",
        # Only the integrations relay chose: Celery's and Flask's would report retries and
        # handled errors again, with arguments and request data.
        auto_enabling_integrations=False,
        integrations=[LoggingIntegration(level=logging.INFO, event_level=None)],
        before_send=scrub_event,  # type: ignore[arg-type]
        before_breadcrumb=scrub_breadcrumb,
    )
    log.info("error reporting on", extra={"action": "sentry.configured"})
    return ErrorReporter(enabled=True)


def scrub_event(event: dict[str, Any], hint: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Drop what may carry secrets or user data from an event before it leaves the process."""
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("data", None)
        request.pop("cookies", None)
        request.pop("query_string", None)
        request.pop("env", None)
        headers = request.get("headers")
        if isinstance(headers, dict):
            request["headers"] = {k: v for k, v in headers.items() if k.lower() in _SAFE_HEADERS}
        if isinstance(request.get("url"), str):
            request["url"] = redact(request["url"])
    event.pop("extra", None)  # log record extras and Celery's task arguments live here
    for container in _exception_values(event):
        if isinstance(container.get("value"), str):
            container["value"] = redact(container["value"])
        for frame in (container.get("stacktrace") or {}).get("frames") or []:
            frame.pop("vars", None)
    message = event.get("logentry") or {}
    if isinstance(message, dict):
        for key in ("message", "formatted"):
            if isinstance(message.get(key), str):
                message[key] = redact(message[key])
        message.pop("params", None)
    event["tags"] = _clean_mapping(event.get("tags"))
    contexts = event.get("contexts")
    if isinstance(contexts, dict):
        contexts.pop("celery", None)
    return event


def scrub_breadcrumb(
    crumb: dict[str, Any], hint: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """Breadcrumbs keep their message (redacted) and category, never their data."""
    crumb.pop("data", None)
    if isinstance(crumb.get("message"), str):
        crumb["message"] = redact(crumb["message"])
    return crumb


def _exception_values(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    exception = event.get("exception")
    if isinstance(exception, dict):
        return [v for v in exception.get("values") or [] if isinstance(v, dict)]
    return []


def _clean_mapping(values: Any) -> Any:
    if not isinstance(values, dict):
        return values
    return {
        k: ("***" if any(w in k.lower() for w in _SECRET_WORDS) else v) for k, v in values.items()
    }
