"""relay: the event and task backbone of a multi-tenant AI application platform.

Import what you need from here; the submodules are the implementation.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from relay.app_factory import create_app, create_runtime
    from relay.config import Plan, Settings, load_settings
    from relay.errors import (
        BadRequest,
        ConfigError,
        Conflict,
        Forbidden,
        InfrastructureError,
        NotFound,
        QuotaExceeded,
        RelayError,
        TaskError,
        Unauthorized,
    )
    from relay.runtime import Runtime

# Names resolve lazily so that `relay api` can let gevent patch the standard library before
# Redis, SQLAlchemy or ssl are imported.
_HOMES = {
    "create_app": "relay.app_factory",
    "create_runtime": "relay.app_factory",
    "Runtime": "relay.runtime",
    "Plan": "relay.config",
    "Settings": "relay.config",
    "load_settings": "relay.config",
}


def __getattr__(name: str) -> Any:
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
    # errors
    "RelayError",
    "ConfigError",
    "InfrastructureError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "QuotaExceeded",
    "TaskError",
]
