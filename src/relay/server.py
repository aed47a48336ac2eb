"""The API server: gunicorn with gevent workers, so many SSE streams can stay open at once.

Its error log and its access log go through relay's log handler (JSON lines by default). The
access log is one line per request (``action: "http.request"``) with the request id
(``X-Request-Id``), the tenant, method, path (never the query string, which may carry a token),
status, duration in milliseconds, and the trace and span ids of the request when tracing is on.

On SIGTERM (to the master, which passes it on, or to the whole process group) a worker stops
accepting connections and raises the process's drain flag: open SSE streams end at their next
event boundary with a ``retry:`` hint, and their clients resume on another process with
``Last-Event-ID``. Requests still running get ``graceful_timeout`` seconds.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger

from relay.adapters.logs import init_logging
from relay.adapters.prometheus import enable_multiprocess, process_exited
from relay.api.request_log import REQUEST_ID, SPAN_ID, TENANT_ID, TRACE_ID
from relay.app_factory import create_app
from relay.config import Settings
from relay.resilience.shutdown import DRAIN


class ApiServer(BaseApplication):  # type: ignore[misc]
    """gunicorn application that builds relay's Flask app inside each worker (after patching)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Before the workers fork: each writes its metrics where /metrics of any worker sums them.
        self.metrics_dir = enable_multiprocess(settings.var_dir, "api")
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
            "accesslog": "-",
            "errorlog": "-",
            "loglevel": self.settings.log.level.lower(),
            "proc_name": "relay-api",
            "logger_class": _relay_logger(self.settings),
            "child_exit": _child_exit,
            "post_worker_init": drain_on_sigterm,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return create_app(self.settings)


def _child_exit(server: Any, worker: Any) -> None:
    """A worker is gone (restart, crash): its live gauges stop counting."""
    process_exited(worker.pid)


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

        def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
            access_line(resp, environ, request_time)

    return RelayGunicornLogger


_ACCESS = logging.getLogger("relay.access")


def access_line(resp: Any, environ: dict[str, Any], request_time: Any) -> None:
    """Log one finished request (``request_time`` is a ``timedelta``)."""
    status = getattr(resp, "status_code", None)
    if status is None:
        status = int(str(resp.status).split(" ", 1)[0])
    method = str(environ.get("REQUEST_METHOD", "-"))
    path = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
    fields: dict[str, Any] = {
        "action": "http.request",
        "request_id": environ.get(REQUEST_ID),
        "tenant_id": environ.get(TENANT_ID),
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": round(request_time.total_seconds() * 1000, 2),
        "bytes": getattr(resp, "sent", None),
        "remote_addr": environ.get("REMOTE_ADDR"),
    }
    if environ.get(TRACE_ID):
        fields["trace_id"], fields["span_id"] = environ[TRACE_ID], environ.get(SPAN_ID)
    _ACCESS.info(f"{method} {path} {status}", extra=fields)
