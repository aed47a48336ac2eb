"""The Celery app of this environment, for Celery's own tools.

``celery -A relay.celery_app inspect ping`` (``active_queues``, ``status``, ``events``, Flower's
``celery -A relay.celery_app flower``) builds the runtime from the environment's settings, exactly
as ``relay worker`` does, and talks to the same broker. ``celery -A relay.celery_app worker``
works too: the worker hooks relay's own command installs are installed here as well.

Importing this module connects to the configured Redis and database: it is an entry point, not a
library module.
"""

from __future__ import annotations

from typing import Any

from relay.composition import create_runtime
from relay.config import load_settings
from relay.runtime import Runtime
from relay.worker.hooks import install_worker_hooks

runtime: Runtime = create_runtime(load_settings())
install_worker_hooks(
    runtime.celery,
    runtime.db,
    runtime.lifecycle,
    shutdown_grace=runtime.settings.celery.shutdown_grace,
)

# Celery looks for ``app`` first, then ``celery``.
app: Any = runtime.celery
celery: Any = app

__all__ = ["app", "celery", "runtime"]
