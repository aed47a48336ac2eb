"""The operator's dashboard at ``/dashboard``: server-rendered pages with htmx, assets shipped.

Pages read through services (``OperationsService``, task records, dead letters, runs); nothing
here talks to Redis or SQL. See :mod:`relay.dashboard.session` for sign-in, roles and CSRF.
"""

from __future__ import annotations

from flask import Flask

from relay.dashboard.session import configure_cookie
from relay.dashboard.views import dashboard


def register_dashboard(app: Flask) -> None:
    """Mount the dashboard blueprint and set the session cookie it signs in with."""
    configure_cookie(app)
    app.register_blueprint(dashboard)


__all__ = ["dashboard", "register_dashboard"]
