"""relay's exception tree: one root, one branch per subsystem.

API errors carry an HTTP status and a machine-readable ``code`` so that the single error handler
in ``relay.api`` can turn any of them into ``{"code", "message", "details"}``.
"""

from __future__ import annotations

from typing import Any


class RelayError(Exception):
    """Root of every error relay raises on purpose."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ConfigError(RelayError):
    """A setting is missing or invalid."""

    code = "config_error"


class InfrastructureError(RelayError):
    """A backing service (Redis, database, broker) is unusable."""

    status = 503
    code = "service_unavailable"


class BrokerUnavailable(InfrastructureError):
    """The message broker refused or could not be reached (wraps kombu's errors)."""

    code = "broker_unavailable"


class RedisUnavailable(InfrastructureError):
    """Redis could not be reached or timed out (wraps redis-py's connection errors)."""

    code = "redis_unavailable"


class DatabaseUnavailable(InfrastructureError):
    """The database could not be reached (wraps SQLAlchemy's connection errors)."""

    code = "database_unavailable"


# --- API-facing errors -------------------------------------------------------------------------


class BadRequest(RelayError):
    """The request is malformed or fails validation."""

    status = 400
    code = "bad_request"


class Unauthorized(RelayError):
    """No or unknown credentials."""

    status = 401
    code = "unauthorized"


class Forbidden(RelayError):
    """Credentials are valid but do not allow this."""

    status = 403
    code = "forbidden"


class NotFound(RelayError):
    """The resource does not exist for this tenant."""

    status = 404
    code = "not_found"


class Conflict(RelayError):
    """The request conflicts with the resource's current state."""

    status = 409
    code = "conflict"


class QuotaExceeded(RelayError):
    """A tenant quota or rate limit refuses the request."""

    status = 429
    code = "quota_exceeded"


class Overloaded(QuotaExceeded):
    """The service is under resource pressure and refuses new work for a while."""

    code = "overloaded"


# --- subsystems --------------------------------------------------------------------------------


class EventError(RelayError):
    """A domain event could not be delivered to a critical receiver."""

    code = "event_error"


class TaskError(RelayError):
    """Base for task runtime errors."""

    code = "task_error"


class QueueCheckError(TaskError):
    """A routed queue has no live consumer."""

    code = "queue_without_consumer"
