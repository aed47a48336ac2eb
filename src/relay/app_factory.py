"""``create_app(settings)``: the relay Flask app around a runtime from ``create_runtime``."""

from __future__ import annotations

from flask import Flask

from relay.api import register_api
from relay.composition import create_runtime
from relay.config import Settings, load_settings
from relay.dashboard import register_dashboard
from relay.first_run import ensure_secret_key
from relay.monitoring.tracing import instrument_flask
from relay.runtime import Runtime


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    """The relay Flask app; ``app.extensions["relay"]`` holds its ``Runtime``.

    ``runtime`` defaults to a new one built from ``settings`` (or the environment's settings).
    Raises ``ConfigError`` for invalid settings.
    """
    runtime = runtime or create_runtime(settings or load_settings())
    app = Flask("relay")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["relay"] = runtime
    # Signs stream tokens and dashboard sessions; shared by every API process of the install.
    app.secret_key = runtime.settings.api.secret_key or ensure_secret_key(runtime.settings.var_dir)
    register_api(app)
    register_dashboard(app)
    instrument_flask(app)  # a server span per request when tracing is on
    return app
