"""Who is signed in to the dashboard, and what they may change.

An operator signs in with the admin token (role ``admin``) or with ``RELAY_API_READONLY_TOKEN``
(role ``viewer``: every page, no change). The role lives in Flask's signed session cookie
(``Secure``, ``HttpOnly``, ``SameSite=Lax``, scoped to ``/dashboard``) with a random CSRF token
that every change must echo (form field ``csrf_token`` or header ``X-CSRF-Token``).
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from enum import StrEnum
from typing import cast

from flask import Flask, abort, current_app, redirect, request, session, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from relay.runtime import Runtime

COOKIE = "relay_dashboard"
LIFETIME = timedelta(hours=12)
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
OPEN_ENDPOINTS = {"dashboard.sign_in", "dashboard.static"}
SIGN_OUT = "dashboard.sign_out"  # any role may sign out (with the CSRF token)
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class Role(StrEnum):
    """What a signed-in operator may do."""

    ADMIN = "admin"
    VIEWER = "viewer"


def runtime() -> Runtime:
    """The runtime of the app serving this request."""
    return cast(Runtime, current_app.extensions["relay"])


def configure_cookie(app: Flask) -> None:
    """The session cookie's attributes (only the dashboard uses Flask's session)."""
    app.config["SESSION_COOKIE_NAME"] = COOKIE
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SECURE"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_PATH"] = "/dashboard"
    app.config["PERMANENT_SESSION_LIFETIME"] = LIFETIME


def role_for(token: str) -> Role | None:
    """The role ``token`` signs in with (compared in constant time), or None."""
    api = runtime().settings.api
    for expected, role in ((api.admin_token, Role.ADMIN), (api.readonly_token, Role.VIEWER)):
        if expected and hmac.compare_digest(token.encode(), expected.encode()):
            return role
    return None


def sign_in(role: Role) -> None:
    """Start a fresh session (a new CSRF token) for ``role``."""
    session.clear()
    session.permanent = True
    session["role"] = role.value
    session[CSRF_FIELD] = secrets.token_urlsafe(32)


def sign_out() -> None:
    session.clear()


def current_role() -> Role | None:
    value = session.get("role")
    return Role(value) if value in {r.value for r in Role} else None


def csrf_token() -> str:
    return str(session.get(CSRF_FIELD, ""))


def can_change() -> bool:
    return current_role() is Role.ADMIN


def guard() -> WerkzeugResponse | None:
    """``before_request`` of the dashboard: signed in, and for changes admin with CSRF."""
    if request.endpoint in OPEN_ENDPOINTS:
        if request.method not in SAFE_METHODS:
            _check_csrf_for_sign_in()
        return None
    role = current_role()
    if role is None:
        if request.headers.get("HX-Request"):
            response = WerkzeugResponse(status=401)
            response.headers["HX-Redirect"] = url_for("dashboard.sign_in")
            return response
        return redirect(url_for("dashboard.sign_in", next=request.full_path))
    if request.method in SAFE_METHODS:
        return None
    if role is not Role.ADMIN and request.endpoint != SIGN_OUT:
        abort(403, "the read-only role cannot change anything")
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD, "")
    expected = csrf_token()
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        abort(403, "missing or wrong CSRF token: reload the page")
    return None


def _check_csrf_for_sign_in() -> None:
    """The sign-in form carries a token from a pre-session cookie (login CSRF)."""
    sent = request.form.get(CSRF_FIELD, "")
    expected = str(session.get("login_csrf", ""))
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        abort(403, "the sign-in form expired: reload the page")


def login_csrf() -> str:
    """The token the sign-in form echoes (kept in the pre-session cookie)."""
    token = session.get("login_csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["login_csrf"] = token
    return token
