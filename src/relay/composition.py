"""The composition root: ``create_runtime(settings)`` builds every part of a relay process once.

Order: logging, embedded Redis (if no URL), database, Redis client, background helpers, the task
chain and the Celery app, the fair dispatcher, outbox, event bus (with its handlers), task
records, admission, run streams, presence and health; then the chain's middlewares, outermost
first. Each step hands a part what it uses at construction; nothing is attached afterwards.

Where a new capability plugs in: a task middleware (``TaskChain.use`` in ``_task_chain``), a
metrics collector (``_metrics``), or a new typed field on ``Runtime`` built here.
"""

from __future__ import annotations

import atexit
import logging
import weakref
from collections.abc import Callable

import redis

from relay import catalog
from relay.adapters.broker import celery_config
from relay.adapters.embedded_redis import EmbeddedRedis
from relay.adapters.logs import init_logging
from relay.adapters.prometheus import Metrics
from relay.adapters.redis_client import init_redis, redis_kwargs
from relay.adapters.sql import init_db
from relay.background import Background
from relay.config import Settings
from relay.errors import ConfigError
from relay.events.bus import EventBus
from relay.events.counters import RedisEventCounters
from relay.events.handlers import register_handlers
from relay.events.outbox import Outbox
from relay.monitoring.alerts import Alert, AlertManager, Severity
from relay.monitoring.collectors import QueueCollector, StoreCollector
from relay.monitoring.errors_reporting import init_error_reporting
from relay.monitoring.health import HealthChecker
from relay.monitoring.levels import ReadinessChecker
from relay.monitoring.presence import WorkerPresence
from relay.monitoring.queues import QueueMonitor
from relay.monitoring.resilience_health import basic_components, resilience_components
from relay.monitoring.task_metrics import TaskStats, TaskStatsCollector
from relay.monitoring.tracing import configure_tracing
from relay.resilience.breaker import BreakerCollector, Breakers
from relay.resilience.pressure import PressureMonitor, PressureState, PsutilSampler, Sampler
from relay.resilience.spool import Spool, SpoolCollector, SpoolStats, breaker_probe
from relay.runtime import Runtime
from relay.scheduling.admission import RedisAdmission
from relay.scheduling.dispatcher import FairDispatcher
from relay.scheduling.metrics import TenantLabels, register_metrics
from relay.scheduling.pressure import PressureAdmission
from relay.scheduling.routing import FairRoute
from relay.scheduling.tenant_queue import RedisTenantQueue
from relay.streaming import QueueConfig, RedisRunControl, RedisStreamChannel, RunStreams
from relay.streaming.spooled import SpoolingRunChannel, stream_replayer
from relay.worker.alerting import AlertDeadTasks
from relay.worker.celery_app import RelayCelery
from relay.worker.deliveries import DeliveryGuard, RedisDeliveryCounts
from relay.worker.effects import IdempotentEffects, RedisEffects, SqlEffects
from relay.worker.lifecycle import RetryPolicyMiddleware, TaskLifecycle
from relay.worker.metrics import TaskMetrics
from relay.worker.middleware import TaskChain
from relay.worker.observability import ReportFailures, Traced
from relay.worker.rejects import ArgumentCheck
from relay.worker.standard import FairLease, Scoped, SentAt
from relay.worker.task import passthrough_errors


def resolve_redis_url(settings: Settings) -> tuple[str, EmbeddedRedis | None]:
    """The Redis URL in effect, starting (or reusing) the embedded server when none is set."""
    if settings.redis.url:
        return settings.redis.url, None
    if settings.redis.sentinels:
        return "redis://", None  # Sentinel resolves the master; the URL is unused
    embedded = EmbeddedRedis(settings.var_dir / "redis")
    embedded.ensure()
    return embedded.url, embedded


def create_runtime(settings: Settings, *, sampler: Sampler | None = None) -> Runtime:
    """Build the runtime (everything but Flask) for workers, beat, CLI and the API.

    ``sampler`` measures resources for the pressure monitor (psutil unless a test gives one).
    Raises ``ConfigError`` for settings that contradict each other (e.g. a visibility timeout
    below the longest task time limit) and ``InfrastructureError`` when the embedded Redis
    cannot start.
    """
    init_logging(settings)
    # Before anything that opens spans or may fail: both are process-wide and idempotent.
    configure_tracing(settings)
    errors = init_error_reporting(settings)
    problems = settings.scheduling.problems(
        catalog.longest_time_limit(), settings.celery.visibility_timeout
    )
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems))
    redis_url, embedded = resolve_redis_url(settings)
    db = init_db(settings)
    client = init_redis(settings.redis, redis_url)
    background = Background()
    metrics = Metrics()
    presence = WorkerPresence(client, settings.monitoring.worker_ttl)
    chain = TaskChain(passthrough=passthrough_errors())
    breakers = Breakers()
    pressure = PressureMonitor(
        sampler or PsutilSampler(settings.var_dir),
        settings.pressure,
        background=background,
        listeners=[_pressure_alert(settings, client)],
    )
    celery = RelayCelery(
        celery_config(settings, redis_url),
        chain=chain,
        presence=presence,
        background=background,
        breakers=breakers,
        pressure=pressure,
    )
    dispatcher = FairDispatcher(
        RedisTenantQueue(client, settings.scheduling),
        celery,
        settings.scheduling,
        settings.tenancy,
        background=background,
    )
    outbox = Outbox(db, celery, route=FairRoute(dispatcher, client, db), background=background)
    spool = _spool(settings, client, breakers, background)
    bus = EventBus(
        client, settings, outbox, metrics.registry, counters=RedisEventCounters(client, spool)
    )
    register_handlers(bus)
    lifecycle = TaskLifecycle(
        db, outbox, heartbeat_interval=settings.celery.heartbeat_interval, background=background
    )
    task_stats = TaskStats(client, background=background)
    runtime = Runtime(
        settings=settings,
        redis_url=redis_url,
        db=db,
        redis=client,
        celery=celery,
        publisher=celery,
        chain=chain,
        metrics=metrics,
        background=background,
        dispatcher=dispatcher,
        outbox=outbox,
        bus=bus,
        lifecycle=lifecycle,
        task_stats=task_stats,
        admission=PressureAdmission(RedisAdmission(client, settings.scheduling), pressure),
        streams=_spooled(_run_streams(settings, client, redis_url), spool, breakers),
        presence=presence,
        queues=QueueMonitor(celery, client),
        health=HealthChecker(
            client,
            db,
            presence,
            settings.workflow.code_sandbox,
            extra=lambda: basic_components(spool, breakers, pressure),
        ),
        errors=errors,
        readiness=ReadinessChecker(
            client,
            db,
            presence,
            bus,
            var_dir=settings.var_dir,
            code_sandbox=settings.workflow.code_sandbox,
            extra=lambda: resilience_components(spool, breakers, pressure),
        ),
        embedded_redis=embedded,
        breakers=breakers,
        spool=spool,
        pressure=pressure,
    )
    _task_chain(runtime)
    _metrics(runtime)
    # Register the catalogue's tasks now, not only when a worker starts, so that producers and
    # ``apply()`` find every task by name.
    celery.loader.import_default_modules()
    # Segments a process left behind when it died are replayed by the next one that starts.
    spool.start()
    # Buffered writes (records, sent marks, counters) are flushed when the process exits; a
    # weak reference, so that exiting never keeps a runtime alive that nobody uses any more.
    atexit.register(_close_at_exit, weakref.ref(runtime))
    return runtime


def _task_chain(runtime: Runtime) -> None:
    """The task middlewares, outermost first."""
    runtime.chain.use(
        SentAt(),
        # Outermost after the stamp: everything the task does (records, logs) is in its span.
        Traced(),
        Scoped(lambda _call: runtime.activate()),
        RetryPolicyMiddleware(),
        TaskMetrics(runtime.task_stats),
        FairLease(runtime.dispatcher),
        # Inside the lease: a dropped copy is neither counted as a delivery nor recorded.
        DeliveryGuard(RedisDeliveryCounts(runtime.redis)),
        # A message whose arguments cannot bind is dead at once, never retried.
        ArgumentCheck(),
        # Inside the lease: only the copy the scheduler lets run is recorded as started.
        runtime.lifecycle,
        IdempotentEffects(SqlEffects(runtime.db), RedisEffects(runtime.redis)),
        ReportFailures(runtime.errors),
        AlertDeadTasks(AlertManager.from_settings(runtime.settings, runtime.redis)),
    )


def _metrics(runtime: Runtime) -> None:
    """Collectors read at scrape time."""
    registry = runtime.metrics.registry
    registry.register(TaskStatsCollector(runtime.redis))
    registry.register(BreakerCollector(runtime.breakers))
    if runtime.spool is not None:
        registry.register(SpoolCollector(runtime.spool))
    register_metrics(
        registry,
        runtime.dispatcher.queue,
        runtime.settings.scheduling.metrics_top_tenants,
        runtime.settings.scheduling.wait_buckets,
        TenantLabels(runtime.settings.monitoring.tenant_labels),
    )
    registry.register(QueueCollector(runtime.queues, runtime.presence))
    registry.register(StoreCollector(runtime.db))


def _run_streams(settings: Settings, client: redis.Redis, redis_url: str) -> RunStreams:
    """Run streams on a Redis pool of their own.

    Every open SSE stream holds a connection while its XREAD waits, and a burst of clients
    connecting at once (gevent serves them all concurrently) needs as many for a moment; in a
    blocking pool of their own (``RELAY_STREAMING_MAX_LISTENERS``; a full pool makes callers
    wait, never fail) streams can neither exhaust nor starve the process's main pool. Sentinel
    setups keep the main client (its pool follows failovers).
    """
    streams_client = client
    if not settings.redis.sentinels:
        pool = redis.BlockingConnectionPool.from_url(
            redis_url,
            max_connections=settings.streaming.max_listeners,
            timeout=settings.redis.socket_timeout,
            **redis_kwargs(settings.redis),
        )
        streams_client = redis.Redis(connection_pool=pool)
    # A blocking read must return before the Redis client's socket timeout fires.
    block = max(0.05, min(1.0, settings.redis.socket_timeout / 2))
    return RunStreams(
        channel=RedisStreamChannel(
            streams_client,
            retention=settings.streaming.retention,
            active_ttl=settings.streaming.ownership_ttl,
        ),
        control=RedisRunControl(streams_client),
        config=QueueConfig.from_settings(settings.streaming, read_block=block),
    )


def _spool(
    settings: Settings, client: redis.Redis, breakers: Breakers, background: Background
) -> Spool:
    """The local spool under ``var/spool``; replay waits for Redis's circuit and a ping."""

    def full(stats: SpoolStats) -> None:
        AlertManager.from_settings(settings, client).raise_alert(
            Alert(
                key="spool.full",
                severity=Severity.CRITICAL,
                message=(
                    "the local spool is full: run events and counts that Redis cannot take "
                    "are refused until Redis is back and replay frees room"
                ),
                details=stats.as_dict(),
            )
        )

    return Spool(
        settings.var_dir / "spool",
        max_bytes=settings.spool.max_bytes,
        on_full=full,
        ready=breaker_probe(breakers, "redis", client.ping),
        background=background,
        interval=settings.spool.replay_interval,
    )


def _pressure_alert(settings: Settings, client: redis.Redis) -> Callable[[PressureState], None]:
    """An alert when resource pressure starts (its end is logged by the monitor)."""

    def alert(state: PressureState) -> None:
        if not state.active or state.sample is None:
            return
        AlertManager.from_settings(settings, client).raise_alert(
            Alert(
                key="resource.pressure",
                severity=Severity.ERROR,
                message=(
                    "resource pressure (" + ", ".join(state.hot) + "): workers stop consuming "
                    "low-priority queues and new work is refused with 429 until it ends"
                ),
                details={
                    "hot": list(state.hot),
                    "cpu": round(state.sample.cpu, 3),
                    "memory": round(state.sample.memory, 3),
                    "disk": round(state.sample.disk, 3),
                },
            )
        )

    return alert


def _spooled(streams: RunStreams, spool: Spool, breakers: Breakers) -> RunStreams:
    """Run streams whose appends go to the spool while Redis cannot take them."""
    channel = streams.channel
    if not isinstance(channel, RedisStreamChannel):
        return streams
    spool.register(
        "run_event",
        stream_replayer(channel.client, retention=channel.retention, active_ttl=channel.active_ttl),
    )
    return RunStreams(
        channel=SpoolingRunChannel(channel, spool, breakers),
        control=streams.control,
        config=streams.config,
    )


def _close_at_exit(ref: weakref.ReferenceType[Runtime]) -> None:
    runtime = ref()
    if runtime is not None:
        # At exit a log handler's stream may be closed already (a test runner's capture): a
        # message that cannot be written is dropped, instead of printing a "Logging error"
        # report with its traceback for each one.
        logging.raiseExceptions = False
        runtime.background.stop_all(timeout=1.0)
