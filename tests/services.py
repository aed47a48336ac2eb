"""Reachability of the real services the integration tests use.

Locally a test that needs an unreachable service is skipped; in CI (``CI=true``) it fails, so a
service that is down can never turn a red run green.
"""

from __future__ import annotations

import os
import socket

import pytest
from kombu.utils.url import url_to_parts

PG_URL = os.environ.get("RELAY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("RELAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
AMQP_URL = os.environ.get("RELAY_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require(name: str, host: str, port: int) -> None:
    """Skip (locally) or fail (in CI) when ``name`` is not listening on host:port."""
    if reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if in_ci():
        pytest.fail(message + " (CI=true: a missing service is a failure)")
    pytest.skip(message)


def require_postgres() -> str:
    require("PostgreSQL", "127.0.0.1", 5432)
    return PG_URL


def require_redis() -> str:
    require("Redis", "127.0.0.1", 6379)
    return REDIS_URL


def external_configuration() -> bool:
    """Whether the suite runs on configured servers (RELAY_DATABASE_URL / RELAY_REDIS_URL)."""
    return bool(os.environ.get("RELAY_DATABASE_URL") or os.environ.get("RELAY_REDIS_URL"))


def require_rabbitmq() -> str:
    """The broker URL; on embedded defaults (no shared server) the test is skipped.

    The embedded configuration touches no shared server, so two runs side by side (CI runs
    both configurations at once) never share the broker. ``RELAY_TEST_AMQP_URL`` opts in.
    """
    if not external_configuration() and "RELAY_TEST_AMQP_URL" not in os.environ:
        pytest.skip(
            "RabbitMQ runs in the configuration on real servers (RELAY_REDIS_URL set); "
            "the embedded configuration uses no shared server"
        )
    parts = url_to_parts(AMQP_URL)
    require("RabbitMQ", parts.hostname or "127.0.0.1", parts.port or 5672)
    return AMQP_URL
