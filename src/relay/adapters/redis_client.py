"""Redis client for coordination, counters and streams.

redis-py's own ``Retry`` with exponential backoff handles transient connection errors; Sentinel
and ``rediss://`` with client certificates are configured from settings alone.
"""

from __future__ import annotations

from typing import Any, cast

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from relay.config import RedisSettings


def redis_kwargs(settings: RedisSettings) -> dict[str, Any]:
    """Connection options shared by every Redis client relay creates."""
    kwargs: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.socket_timeout,
        "health_check_interval": 30,
        "retry": Retry(ExponentialBackoff(cap=2.0, base=0.05), settings.retries),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
    }
    if settings.url and settings.url.startswith("rediss://"):
        kwargs.update(
            ssl_ca_certs=settings.ssl_ca_certs,
            ssl_certfile=settings.ssl_certfile,
            ssl_keyfile=settings.ssl_keyfile,
        )
    return kwargs


def init_redis(settings: RedisSettings, url: str) -> redis.Redis:
    """Create the process's Redis client for ``url`` (or the Sentinel master)."""
    kwargs = redis_kwargs(settings)
    if settings.sentinels:
        hosts = []
        for item in settings.sentinels.split(","):
            host, _, port = item.strip().rpartition(":")
            hosts.append((host, int(port)))
        sentinel = Sentinel(hosts, socket_timeout=settings.socket_timeout)  # type: ignore[no-untyped-call]
        master = sentinel.master_for(settings.sentinel_master, redis_class=redis.Redis, **kwargs)  # type: ignore[no-untyped-call]
        return cast(redis.Redis, master)
    return redis.Redis.from_url(url, **kwargs)
