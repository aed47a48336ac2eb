"""``create_app(settings)``: builds the Flask app and the runtime in a fixed order.

Order: logging, embedded Redis (if no URL), database, Redis client, Celery, metrics, outbox,
event bus (with its handlers), routes.
Each step only uses what the steps before it built.
"""

from __future__ import annotations

from flask import Flask

from relay.config import Settings, load_settings
from relay.errors import ConfigError
from relay.events.bus import EventBus
from relay.events.handlers import register_handlers
from relay.events.outbox import Outbox
from relay.extensions.embedded import EmbeddedRedis
from relay.extensions.ext_celery import init_celery
from relay.extensions.ext_db import init_db
from relay.extensions.ext_logging import init_logging
from relay.extensions.ext_metrics import init_metrics
from relay.extensions.ext_redis import init_redis
from relay.monitoring.task_metrics import TaskStats, TaskStatsCollector
from relay.runtime import Runtime
from relay.scheduling.hooks import fair_publisher, register_scheduling_metrics
from relay.tasks import catalog
from relay.tasks.lifecycle import TaskLifecycle


def resolve_redis_url(settings: Settings) -> tuple[str, EmbeddedRedis | None]:
    """The Redis URL in effect, starting (or reusing) the embedded server when none is set."""
    if settings.redis.url:
        return settings.redis.url, None
    if settings.redis.sentinels:
        return "redis://", None  # Sentinel resolves the master; the URL is unused
    embedded = EmbeddedRedis(settings.var_dir / "redis")
    embedded.ensure()
    return embedded.url, embedded


def create_runtime(settings: Settings) -> Runtime:
    """Build the runtime (everything but Flask) for workers, beat, CLI and the API."""
    init_logging(settings)
    redis_url, embedded = resolve_redis_url(settings)
    db = init_db(settings)
    client = init_redis(settings.redis, redis_url)
    celery = init_celery(settings, redis_url)
    metrics = init_metrics()
    outbox = Outbox(db, celery)
    bus = EventBus(client, settings, outbox, registry=metrics.registry)
    register_handlers(bus)
    lifecycle = TaskLifecycle(
        db,
        outbox,
        TaskStats(client),
        heartbeat_interval=settings.celery.heartbeat_interval,
    )
    metrics.registry.register(TaskStatsCollector(client))
    runtime = Runtime(
        settings=settings,
        redis_url=redis_url,
        db=db,
        redis=client,
        celery=celery,
        metrics=metrics,
        outbox=outbox,
        bus=bus,
        lifecycle=lifecycle,
        embedded_redis=embedded,
    )
    celery.relay_runtime = runtime
    problems = settings.scheduling.problems(
        catalog.longest_time_limit(), settings.celery.visibility_timeout
    )
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems))
    # Producers keep using the outbox; messages for fairly scheduled queues go through the
    # tenant-fair dispatcher when they are published.
    outbox.fair_submit = fair_publisher(runtime)
    outbox.fair_queues = catalog.FAIR_QUEUES
    register_scheduling_metrics(runtime)
    return runtime


def create_app(settings: Settings | None = None) -> Flask:
    """The relay Flask app; ``app.extensions["relay"]`` holds its ``Runtime``."""
    settings = settings or load_settings()
    runtime = create_runtime(settings)
    app = Flask("relay")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["relay"] = runtime
    runtime.celery.flask_app = app

    from relay.api import register_api

    register_api(app)
    return app
