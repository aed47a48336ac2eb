"""The event bus: emits a signal to every receiver, each one isolated, counted and timed.

blinker on its own holds receivers weakly, calls them in no fixed order and lets the first
exception escape to the sender, skipping the rest. ``EventBus`` keeps receivers alive, runs each
in its own SAVEPOINT of the caller's transaction, logs and counts a failure and goes on with the
others. A receiver connected with ``critical=True`` re-raises instead, so the caller's whole
transaction rolls back (the message quota is such a receiver).

Counts go to Prometheus and to per-minute Redis hashes ``relay:events:<minute>:<signal>``
(fields ``success``, ``failure``, ``total_ms``; kept 24 h), from which ``error_rates()`` reads
the last hour for the health check.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from blinker import NamedSignal
from prometheus_client import CollectorRegistry, Counter, Histogram

from relay.events.signals import ALL_SIGNALS, PAYLOAD_TYPES

if TYPE_CHECKING:
    import redis
    from sqlalchemy.orm import Session

    from relay.config import Settings
    from relay.events.outbox import Outbox

log = logging.getLogger(__name__)

COUNTER_PREFIX = "relay:events:"
COUNTER_TTL = 24 * 3600
FLUSH_INTERVAL = 1.0


@dataclass(frozen=True)
class EventContext:
    """What a receiver may use: the caller's session (never commit it), the outbox, Redis."""

    session: Session | None
    outbox: Outbox
    redis: redis.Redis
    settings: Settings


Receiver = Callable[[Any, EventContext], None]


@dataclass
class _Stats:
    calls: int = 0
    failures: int = 0
    seconds: float = 0.0


class EventBus:
    """Emits domain signals to their receivers with isolation, metrics and counters."""

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        outbox: Outbox,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.redis = client
        self.settings = settings
        self.outbox = outbox
        self._critical: dict[Receiver, bool] = {}
        self._lock = threading.Lock()
        self.stats: dict[tuple[str, str], _Stats] = defaultdict(_Stats)
        self._pending: dict[tuple[int, str], list[float]] = defaultdict(lambda: [0, 0, 0.0])
        self._last_flush = time.monotonic()
        self.registry = registry or CollectorRegistry()
        self._calls = Counter(
            "relay_event_receiver_calls",
            "Receiver invocations by signal, receiver and outcome",
            ["signal", "receiver", "outcome"],
            registry=self.registry,
        )
        self._seconds = Histogram(
            "relay_event_receiver_seconds",
            "Receiver duration by signal",
            ["signal"],
            registry=self.registry,
        )

    # --- registration ---------------------------------------------------------------------------

    def connect(self, signal: NamedSignal, receiver: Receiver, *, critical: bool = False) -> None:
        """Connect ``receiver`` strongly (blinker would drop a weakly held closure)."""
        signal.connect(receiver, weak=False)
        self._critical[receiver] = critical

    def disconnect(self, signal: NamedSignal, receiver: Receiver) -> None:
        signal.disconnect(receiver)
        self._critical.pop(receiver, None)

    # --- emitting -------------------------------------------------------------------------------

    def emit(self, signal: NamedSignal, payload: Any, session: Session | None = None) -> None:
        """Run every receiver of ``signal`` with ``payload`` inside ``session``'s transaction."""
        expected = PAYLOAD_TYPES.get(signal)
        if expected is None or not isinstance(payload, expected):
            raise TypeError(f"{signal.name} carries {expected}, got {type(payload).__name__}")
        context = EventContext(session, self.outbox, self.redis, self.settings)
        for receiver in list(signal.receivers_for(payload)):
            self._call(signal.name, receiver, payload, context)
        self._maybe_flush()

    def _call(self, name: str, receiver: Receiver, payload: Any, context: EventContext) -> None:
        receiver_name = getattr(receiver, "__qualname__", repr(receiver))
        critical = self._critical.get(receiver, False)
        started = time.perf_counter()
        failed = False
        try:
            if context.session is not None:
                # A savepoint: a failing receiver's partial writes vanish, the caller's stay.
                with context.session.begin_nested():
                    receiver(payload, context)
            else:
                receiver(payload, context)
        except Exception:
            failed = True
            if critical:
                raise
            log.exception(
                "event receiver failed",
                extra={
                    "action": "event.receiver_failed",
                    "signal": name,
                    "receiver": receiver_name,
                },
            )
        finally:
            self._record(name, receiver_name, time.perf_counter() - started, failed)

    def _record(self, name: str, receiver: str, seconds: float, failed: bool) -> None:
        minute = int(time.time() // 60)
        with self._lock:
            stats = self.stats[(name, receiver)]
            stats.calls += 1
            stats.failures += failed
            stats.seconds += seconds
            pending = self._pending[(minute, name)]
            pending[1 if failed else 0] += 1
            pending[2] += seconds * 1000
        self._calls.labels(name, receiver, "failure" if failed else "success").inc()
        self._seconds.labels(name).observe(seconds)

    # --- per-minute counters --------------------------------------------------------------------

    def _maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= FLUSH_INTERVAL:
            self.flush()

    def flush(self) -> None:
        """Write the buffered per-minute counters to Redis (one pipeline)."""
        with self._lock:
            pending, self._pending = self._pending, defaultdict(lambda: [0, 0, 0.0])
            self._last_flush = time.monotonic()
        if not pending:
            return
        pipe = self.redis.pipeline(transaction=False)
        for (minute, name), (success, failure, total_ms) in pending.items():
            key = f"{COUNTER_PREFIX}{minute}:{name}"
            if success:
                pipe.hincrby(key, "success", int(success))
            if failure:
                pipe.hincrby(key, "failure", int(failure))
            pipe.hincrbyfloat(key, "total_ms", total_ms)
            pipe.expire(key, COUNTER_TTL)
        try:
            pipe.execute()
        except Exception:
            # Counters are best effort: never fail a request because Redis blinked.
            log.warning("event counters not flushed", extra={"action": "event.flush_failed"})

    def error_rates(self, window_seconds: int = 3600) -> dict[str, dict[str, float]]:
        """Per signal over the last ``window_seconds``: total, failures, rate, average ms."""
        self.flush()
        now = int(time.time() // 60)
        minutes = range(now - window_seconds // 60 + 1, now + 1)
        pipe = self.redis.pipeline(transaction=False)
        keys = [(signal.name, m) for signal in ALL_SIGNALS for m in minutes]
        for name, minute in keys:
            pipe.hgetall(f"{COUNTER_PREFIX}{minute}:{name}")
        totals: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0])
        for (name, _), values in zip(keys, pipe.execute(), strict=True):
            if values:
                row = totals[name]
                row[0] += int(values.get("success", 0))
                row[1] += int(values.get("failure", 0))
                row[2] += float(values.get("total_ms", 0))
        result: dict[str, dict[str, float]] = {}
        for name, (success, failure, total_ms) in totals.items():
            total = success + failure
            result[name] = {
                "total": total,
                "failures": failure,
                "error_rate": failure / total if total else 0.0,
                "avg_ms": total_ms / total if total else 0.0,
            }
        return result
