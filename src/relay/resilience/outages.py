"""Which exceptions mean "a backing service is down", as relay's ``InfrastructureError`` family.

Client libraries raise their own types for an outage: redis-py's ``ConnectionError`` and
``TimeoutError``, kombu's ``OperationalError``, SQLAlchemy's ``OperationalError`` /
``InterfaceError`` (or any DBAPI error that invalidated its connection) and the pool's
``TimeoutError``. ``as_outage`` maps them (also when wrapped: causes and contexts are followed)
to ``RedisUnavailable``, ``BrokerUnavailable`` or ``DatabaseUnavailable``, so the API answers
503 with ``Retry-After`` and tasks retry on the infrastructure policy instead of failing.
"""

from __future__ import annotations

import redis.exceptions
import sqlalchemy.exc
from kombu.exceptions import OperationalError as KombuOperationalError

from relay.errors import (
    BrokerUnavailable,
    DatabaseUnavailable,
    InfrastructureError,
    RedisUnavailable,
)

# Seconds a client is told to wait before trying again while a service is down.
RETRY_AFTER = 5


def _direct(error: BaseException) -> InfrastructureError | None:
    if isinstance(error, InfrastructureError):
        return error
    if isinstance(error, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        return RedisUnavailable("Redis is unavailable; try again shortly")
    if isinstance(error, KombuOperationalError):
        return BrokerUnavailable("the message broker is unavailable; try again shortly")
    if isinstance(
        error,
        (
            sqlalchemy.exc.OperationalError,
            sqlalchemy.exc.InterfaceError,
            sqlalchemy.exc.TimeoutError,
        ),
    ) or (isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated):
        return DatabaseUnavailable("the database is unavailable; try again shortly")
    return None


def as_outage(error: BaseException) -> InfrastructureError | None:
    """The ``InfrastructureError`` that ``error`` (or an error it wraps) stands for, or ``None``."""
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        found = _direct(current)
        if found is not None:
            if found.details is None and found is not current:
                found.details = {"retry_after": RETRY_AFTER}
            return found
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return None


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` means a backing service is down (a retry later can succeed)."""
    return as_outage(error) is not None
