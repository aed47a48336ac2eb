"""Reachability of the real services the integration tests use.

Locally a test that needs an unreachable service is skipped; in CI (``CI=true``) it fails, so a
service that is down can never turn a red run green.
"""

from __future__ import annotations

import os
import socket

import pytest

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


def require_rabbitmq() -> str:
    if os.environ.get("RELAY_TEST_SKIP_RABBITMQ") == "1":
        # CI runs two configurations side by side; only one of them may use the shared broker.
        pytest.skip("RabbitMQ is exercised by the other configuration of this run")
    require("RabbitMQ", "127.0.0.1", 5672)
    return AMQP_URL
