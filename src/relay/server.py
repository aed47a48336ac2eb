"""The API server: gunicorn with gevent workers, so many SSE streams can stay open at once.

On SIGTERM (to the master, which passes it on, or to the whole process group) a worker stops
accepting connections and raises the process's drain flag: open SSE streams end at their next
event boundary with a ``retry:`` hint, and their clients resume on another process with
``Last-Event-ID``. Requests still running get ``graceful_timeout`` seconds.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger

from relay.adapters.logs import init_logging
from relay.app_factory import create_app
from relay.config import Settings
from relay.resilience.shutdown import DRAIN


class ApiServer(BaseApplication):  # type: ignore[misc]
    """gunicorn application that builds relay's Flask app inside each worker (after patching)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        api = self.settings.api
        options: dict[str, Any] = {
            "bind": f"{api.host}:{api.port}",
            "workers": api.workers,
            "worker_class": "gevent",
            "worker_connections": 1000,
            "timeout": 60,
            "graceful_timeout": 5,
            "keepalive": 5,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": self.settings.log.level.lower(),
            "proc_name": "relay-api",
            "logger_class": _relay_logger(self.settings),
            "post_worker_init": drain_on_sigterm,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return create_app(self.settings)


def drain_on_sigterm(worker: Any) -> None:
    """gunicorn hook: a worker's SIGTERM also raises the drain flag, then stops the worker."""
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        DRAIN.begin("api shutting down")
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.siginterrupt(signal.SIGTERM, False)


def _relay_logger(settings: Settings) -> type[GunicornLogger]:
    """gunicorn's logger, writing through relay's log handler: one format for every process."""

    class RelayGunicornLogger(GunicornLogger):  # type: ignore[misc]
        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            init_logging(settings)
            for log in (self.error_log, self.access_log):
                for handler in list(log.handlers):
                    log.removeHandler(handler)
                log.propagate = True  # to the root logger, which relay's handler formats

    return RelayGunicornLogger
