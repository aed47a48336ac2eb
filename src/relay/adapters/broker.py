"""Celery configuration: broker and backend from settings, queues and routes from the catalogue.

Delivery is at-least-once: ``acks_late`` with ``reject_on_worker_lost``, one prefetched message per
process, and a Redis visibility timeout above the longest hard time limit (checked here, so a
long task is never redelivered while it still runs).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from kombu import Exchange, Queue

from relay import catalog
from relay.adapters.redis_transport import TRANSPORT as REDIS_TRANSPORT
from relay.config import Settings
from relay.errors import ConfigError


def broker_url(settings: Settings, redis_url: str) -> str:
    """The Celery broker URL: explicit ``RELAY_CELERY_BROKER_URL`` or relay's Redis."""
    if settings.celery.broker_url:
        return settings.celery.broker_url
    return celery_redis_url(settings, redis_url)


def celery_redis_url(settings: Settings, redis_url: str) -> str:
    """relay's Redis in the URL form kombu and Celery's backend understand."""
    if settings.redis.sentinels:
        return ";".join(f"sentinel://{h.strip()}" for h in settings.redis.sentinels.split(","))
    if redis_url.startswith("unix://"):
        return "redis+socket://" + urlsplit(redis_url).path
    return redis_url


def _transport_options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {"visibility_timeout": settings.celery.visibility_timeout}
    if settings.redis.sentinels:
        options["master_name"] = settings.redis.sentinel_master
    return options


def _redbeat_redis(settings: Settings, redis_url: str) -> dict[str, Any]:
    """Where beat keeps its schedule and lock: relay's Redis, or its Sentinel master."""
    redis = settings.redis
    if not redis.sentinels:
        timeouts = {"socket_timeout": redis.socket_timeout, "socket_connect_timeout": 2.0}
        return {"redbeat_redis_url": redis_url, "redbeat_redis_options": timeouts}
    hosts = []
    for item in redis.sentinels.split(","):
        host, _, port = item.strip().rpartition(":")
        hosts.append((host, int(port)))
    return {
        "redbeat_redis_url": "redis-sentinel://",
        "redbeat_redis_options": {
            "sentinels": hosts,
            "service_name": redis.sentinel_master,
            "socket_timeout": redis.socket_timeout,
        },
    }


def _broker_transport(settings: Settings, redis_url: str) -> str | None:
    """relay's Redis transport for a plain Redis broker; None lets the URL's scheme choose."""
    scheme = broker_url(settings, redis_url).split("://", 1)[0]
    return REDIS_TRANSPORT if scheme in ("redis", "rediss", "redis+socket") else None


def check_visibility_timeout(settings: Settings) -> None:
    """Refuse a visibility timeout that would redeliver a task while it still runs."""
    longest = catalog.longest_time_limit()
    if settings.celery.visibility_timeout <= longest:
        raise ConfigError(
            f"RELAY_CELERY_VISIBILITY_TIMEOUT ({settings.celery.visibility_timeout}s) must exceed "
            f"the longest task time limit ({longest}s)"
        )


def celery_config(settings: Settings, redis_url: str) -> dict[str, Any]:
    """The Celery configuration of this process (tasks are imported from the catalogue)."""
    check_visibility_timeout(settings)
    backend = celery_redis_url(settings, redis_url)
    exchange = Exchange("relay", type="direct")
    ssl: dict[str, Any] | None = None
    if redis_url.startswith("rediss://"):
        ssl = {
            "ssl_cert_reqs": "required",
            "ssl_ca_certs": settings.redis.ssl_ca_certs,
            "ssl_certfile": settings.redis.ssl_certfile,
            "ssl_keyfile": settings.redis.ssl_keyfile,
        }
    return {
        "broker_url": broker_url(settings, redis_url),
        "broker_transport": _broker_transport(settings, redis_url),
        "result_backend": backend,
        "broker_transport_options": _transport_options(settings),
        # The result backend's pub/sub reconnects inside ``send_task`` (to hear the result) and
        # by default retries 20 times a second apart: a publish would hang 20 s while Redis is
        # down. A few quick retries ride out a blip; an outage fails fast (503, outbox, retry).
        "result_backend_transport_options": {
            **_transport_options(settings),
            "retry_policy": {
                "max_retries": 3,
                "interval_start": 0,
                "interval_step": 0.5,
                "interval_max": 1,
            },
        },
        "broker_connection_retry_on_startup": True,
        "broker_use_ssl": ssl if not settings.celery.broker_url else None,
        "redis_backend_use_ssl": ssl,
        "task_queues": [Queue(q.name, exchange, routing_key=q.name) for q in catalog.QUEUES],
        "task_default_exchange": "relay",
        "task_default_queue": "monitor",
        "task_default_routing_key": "monitor",
        "task_routes": {t.name: {"queue": t.queue, "routing_key": t.queue} for t in catalog.TASKS},
        "task_annotations": {
            t.name: {"soft_time_limit": t.soft_time_limit, "time_limit": t.time_limit}
            for t in catalog.TASKS
        },
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_expires": settings.celery.result_expires,
        "result_extended": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # No STARTED state in the result backend: Celery stores it before the body runs, and
        # when Redis is down that store fails outside the body, which acknowledges (drops) a
        # message whose task never ran. relay records STARTED in its own task records.
        "task_track_started": False,
        "worker_prefetch_multiplier": settings.celery.prefetch_multiplier,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        # Celery's own tools (``celery events``, Flower) see tasks from publish to outcome.
        "worker_send_task_events": settings.celery.events,
        "task_send_sent_event": settings.celery.events,
        "broker_connection_timeout": settings.redis.socket_timeout,
        "beat_schedule": {
            b.name: {"task": b.task, "schedule": b.every}
            for b in catalog.enabled_beat_entries(settings)
        },
        # RedBeat, made to survive Redis outages (relay.resilience.beat). Beat sleeps at most
        # ``beat_max_interval`` between ticks and a standby polls the lock at that interval, so
        # a standby takes over within seconds of the lock's expiry (the lock outlives a few
        # missed ticks, never minutes).
        "beat_scheduler": "relay.resilience.beat:ResilientScheduler",
        "beat_max_loop_interval": settings.celery.beat_max_interval,
        "redbeat_key_prefix": "relay:beat:",
        "redbeat_lock_timeout": settings.celery.beat_lock_timeout,
        **_redbeat_redis(settings, redis_url),
        "timezone": "UTC",
        "enable_utc": True,
        "include": list(catalog.TASK_MODULES),
    }
