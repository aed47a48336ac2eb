"""relay: the event and task backbone of a multi-tenant AI application platform.

Import what you need from here; the submodules are the implementation. The surface, by topic:

- application: ``create_runtime(settings)`` builds every part of a process (raises
  ``ConfigError`` for contradicting settings); ``create_app(settings, runtime=None)`` wraps a
  runtime in the Flask API; ``Runtime`` is what both hold.
- domain events: ``signals`` (the blinker signals, one frozen payload each) and ``EventBus``
  (``emit(signal, payload, session)``; isolated receivers, ``critical=True`` to fail the caller).
- tasks: ``relay_task(spec)`` declares a task by its catalogue row; ``RelayTask`` is its base
  (``self.runtime``, ``self.effect()`` for at-most-once effects); ``TaskMiddleware`` and
  ``TaskChain`` are the hooks around every execution; ``RetryPolicy`` decides retries;
  ``RetryableTaskError`` / ``FatalTaskError`` steer it.
- workflows: ``GraphEngine`` runs a Dify graph; ``load_dsl`` reads an export.
- errors: ``RelayError`` is the root of everything raised on purpose; ``InfrastructureError``
  (``BrokerUnavailable``, ``RedisUnavailable``, ``DatabaseUnavailable``) when a backing service
  is away.
- testing: ``relay.testing`` has the in-memory doubles (broker with ``join()``, stores).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from relay.app_factory import create_app
    from relay.composition import create_runtime
    from relay.config import Plan, Settings, load_settings
    from relay.errors import (
        BadRequest,
        BrokerUnavailable,
        ConfigError,
        Conflict,
        DatabaseUnavailable,
        EventError,
        Forbidden,
        InfrastructureError,
        NotFound,
        QuotaExceeded,
        RedisUnavailable,
        RelayError,
        TaskError,
        Unauthorized,
    )
    from relay.events import signals
    from relay.events.bus import EventBus, EventContext
    from relay.retry import FatalTaskError, RetryableTaskError, RetryPolicy
    from relay.runtime import Runtime
    from relay.tasks.base import RelayTask, relay_task
    from relay.worker.middleware import TaskCall, TaskChain, TaskMiddleware
    from relay.workflow import load_dsl
    from relay.workflow.engine import GraphEngine

# Names resolve lazily so that `relay api` can let gevent patch the standard library before
# Redis, SQLAlchemy or ssl are imported.
_HOMES = {
    "create_app": "relay.app_factory",
    "create_runtime": "relay.composition",
    "Runtime": "relay.runtime",
    "Plan": "relay.config",
    "Settings": "relay.config",
    "load_settings": "relay.config",
    "EventBus": "relay.events.bus",
    "EventContext": "relay.events.bus",
    "RetryPolicy": "relay.retry",
    "RetryableTaskError": "relay.retry",
    "FatalTaskError": "relay.retry",
    "RelayTask": "relay.tasks.base",
    "relay_task": "relay.tasks.base",
    "TaskCall": "relay.worker.middleware",
    "TaskChain": "relay.worker.middleware",
    "TaskMiddleware": "relay.worker.middleware",
    "GraphEngine": "relay.workflow.engine",
    "load_dsl": "relay.workflow",
}


def __getattr__(name: str) -> Any:
    if name == "signals":
        return import_module("relay.events.signals")
    module = _HOMES.get(name, "relay.errors" if name in __all__ else None)
    if module is None:
        raise AttributeError(f"module 'relay' has no attribute {name!r}")
    return getattr(import_module(module), name)


__all__ = [
    # application
    "create_app",
    "create_runtime",
    "Runtime",
    # configuration
    "Plan",
    "Settings",
    "load_settings",
    # domain events
    "signals",
    "EventBus",
    "EventContext",
    # tasks
    "relay_task",
    "RelayTask",
    "TaskMiddleware",
    "TaskChain",
    "TaskCall",
    "RetryPolicy",
    "RetryableTaskError",
    "FatalTaskError",
    # workflows
    "GraphEngine",
    "load_dsl",
    # errors
    "RelayError",
    "ConfigError",
    "InfrastructureError",
    "BrokerUnavailable",
    "RedisUnavailable",
    "DatabaseUnavailable",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "QuotaExceeded",
    "EventError",
    "TaskError",
]
