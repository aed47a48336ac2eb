"""The event bus: emits a signal to every receiver, each one isolated, counted and timed.

blinker on its own holds receivers weakly, calls them in no fixed order and lets the first
exception escape to the sender, skipping the rest. ``EventBus`` keeps receivers alive (scoped to
the bus, so that they go away with it), runs them in connection order, each in its own SAVEPOINT
of the caller's transaction (opened on the receiver's first statement, so that one that never
touches the database costs no round trip), logs and counts a failure and goes on with the
others. A receiver connected with ``critical=True`` re-raises instead, so the caller's whole
transaction rolls back (the message quota is such a receiver).

Counts go to Prometheus and to per-minute ``EventCounters`` (Redis, shared by every process;
or in memory), from which ``error_rates()`` reads the last hour for the health check.
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
from prometheus_client import CollectorRegistry, Counter, Summary
from prometheus_client.core import CounterMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector

from relay.adapters.prometheus import multiprocess_dir
from relay.adapters.savepoint import lazy_savepoint
from relay.adapters.sql import after_commit
from relay.errors import EventError
from relay.events.counters import EventCounters
from relay.events.signals import ALL_SIGNALS, PAYLOAD_TYPES

if TYPE_CHECKING:
    import redis
    from sqlalchemy.orm import Session

    from relay.config import Settings
    from relay.events.outbox import Outbox

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 1.0


@dataclass(frozen=True)
class EventContext:
    """What a receiver may use: the caller's session (never commit it), the outbox, Redis."""

    session: Session | None
    bus_outbox: Outbox | None
    bus_redis: redis.Redis | None
    settings: Settings

    @property
    def outbox(self) -> Outbox:
        """The outbox, to enqueue tasks in the caller's transaction."""
        if self.bus_outbox is None:
            raise EventError("this receiver enqueues tasks: the bus was built without an outbox")
        return self.bus_outbox

    @property
    def redis(self) -> redis.Redis:
        """The process's Redis client."""
        if self.bus_redis is None:
            raise EventError("this receiver uses Redis: the bus was built without a client")
        return self.bus_redis

    def require_session(self) -> Session:
        """The caller's session; a receiver that writes rows cannot run without one."""
        if self.session is None:
            raise EventError("this receiver writes rows: emit the event with the caller's session")
        return self.session


Receiver = Callable[[Any, EventContext], None]


def _receiver_name(receiver: Receiver) -> str:
    module = getattr(receiver, "__module__", None)
    name = getattr(receiver, "__qualname__", None) or repr(receiver)
    return f"{module}.{name}" if module else name


@dataclass
class _Stats:
    calls: int = 0
    failures: int = 0
    seconds: float = 0.0


class EventBus:
    """Emits domain signals to their receivers with isolation, metrics and counters."""

    def __init__(
        self,
        client: redis.Redis | None,
        settings: Settings,
        outbox: Outbox | None,
        registry: CollectorRegistry | None = None,
        *,
        counters: EventCounters,
    ) -> None:
        """``client`` and ``outbox`` are what receivers get in their ``EventContext`` (a receiver
        that needs one fails, isolated, when it is ``None``); ``counters`` keeps the per-minute
        counts."""
        self.redis = client
        self.counters = counters
        self.settings = settings
        self.outbox = outbox
        # signal name -> {receiver: critical}, in connection order (dicts keep insertion order).
        self._receivers: dict[str, dict[Receiver, bool]] = {}
        # Metric label of each connected receiver, computed once (not on every emit).
        self._names: dict[Receiver, str] = {}
        # Receivers declared ``writes=False``: they run without a savepoint.
        self._no_savepoint: set[Receiver] = set()
        self._lock = threading.Lock()
        self.stats: dict[tuple[str, str], _Stats] = defaultdict(_Stats)
        self._pending: dict[tuple[int, str], list[float]] = defaultdict(lambda: [0, 0, 0.0])
        self._last_flush = time.monotonic()
        self.registry = registry or CollectorRegistry()
        self._shared: _SharedStats | None = None
        if multiprocess_dir() is not None:
            # Forked processes: each writes its counts to the shared files the registry reads.
            self._shared = _SharedStats()
        else:
            # Exported at scrape time from ``stats``: no metric update on the hot path.
            self.registry.register(_BusCollector(self))

    # --- registration ---------------------------------------------------------------------------

    def connect(
        self,
        signal: NamedSignal,
        receiver: Receiver,
        *,
        critical: bool = False,
        writes: bool = True,
    ) -> None:
        """Connect ``receiver`` to ``signal`` on this bus; connecting it again updates the flags.

        ``writes=False`` declares a receiver that adds nothing to the caller's session (it only
        reads, or registers after-commit work): it runs without a SAVEPOINT of its own, even when
        it runs a statement. Otherwise the savepoint is lazy (``relay.adapters.savepoint``): it
        is opened on the receiver's first flush or statement, so a receiver that does not touch
        the database pays nothing for it either, and one that writes rows or enqueues tasks has
        its partial writes roll back alone when it fails.

        Held strongly by the bus (blinker alone would drop a closure as soon as its creator
        returns) and scoped to it: blinker's signals are process globals, and a receiver
        connected for ``ANY`` sender would fire for every other bus in the process (a second app,
        the next test) and never go away. So blinker gets this bus as the sender and only a weak
        reference to the receiver: both vanish from the signal together with the bus.
        """
        try:
            signal.connect(receiver, sender=self, weak=True)
        except TypeError:  # not weakly referenceable: blinker keeps it alive instead
            signal.connect(receiver, sender=self, weak=False)
        with self._lock:
            self._receivers.setdefault(signal.name, {})[receiver] = critical
            self._names[receiver] = _receiver_name(receiver)
            if writes:
                self._no_savepoint.discard(receiver)
            else:
                self._no_savepoint.add(receiver)

    def disconnect(self, signal: NamedSignal, receiver: Receiver) -> None:
        """Disconnect ``receiver`` from ``signal`` on this bus (no error when not connected)."""
        signal.disconnect(receiver, sender=self)
        with self._lock:
            self._receivers.get(signal.name, {}).pop(receiver, None)

    def receivers(self, signal: NamedSignal) -> list[tuple[Receiver, bool]]:
        """``(receiver, critical)`` of this bus, in the order they run (connection order).

        Receivers connected to the blinker signal directly (for ``ANY`` sender) are not called:
        they would take blinker's ``(sender, **kwargs)`` and would be shared by every bus.
        """
        with self._lock:
            own = dict(self._receivers.get(signal.name, {}))
        live = list(signal.receivers_for(self))
        return [(r, critical) for r, critical in own.items() if r in live]

    # --- emitting -------------------------------------------------------------------------------

    def emit(self, signal: NamedSignal, payload: Any, session: Session | None = None) -> None:
        """Run every receiver of ``signal`` with ``payload`` inside ``session``'s transaction.

        Each receiver runs in its own SAVEPOINT, opened on its first statement: a failing
        non-critical receiver is logged, counted and rolled back alone while the others still
        run; a critical one re-raises (after its savepoint is rolled back) so that the caller's
        transaction fails.
        """
        expected = PAYLOAD_TYPES.get(signal)
        if expected is None:
            raise TypeError(f"{signal.name} is not a relay domain signal")
        if not isinstance(payload, expected):
            raise TypeError(
                f"{signal.name} carries {expected.__name__}, got {type(payload).__name__}"
            )
        if signal.is_muted:
            return
        context = EventContext(session, self.outbox, self.redis, self.settings)
        outcomes: list[tuple[str, float, bool]] = []
        try:
            for receiver, critical in self.receivers(signal):
                self._call(signal.name, receiver, critical, payload, context, outcomes)
        finally:
            # One clock read and one lock for the whole emit, not one per receiver.
            self._record(signal.name, outcomes)
            if session is None:
                self._maybe_flush()
            else:
                # The flush is a Redis round trip: not inside the caller's transaction.
                after_commit(session, self._maybe_flush)

    def _call(
        self,
        name: str,
        receiver: Receiver,
        critical: bool,
        payload: Any,
        context: EventContext,
        outcomes: list[tuple[str, float, bool]],
    ) -> None:
        receiver_name = self._names.get(receiver) or _receiver_name(receiver)
        started = time.perf_counter()
        failed = False
        try:
            if context.session is not None and receiver not in self._no_savepoint:
                # A savepoint, opened on the receiver's first statement: a failing receiver's
                # partial writes vanish, the caller's stay; one that never touches the database
                # costs no round trip.
                with lazy_savepoint(context.session):
                    receiver(payload, context)
            else:
                receiver(payload, context)
        except Exception:
            failed = True
            log.exception(
                "critical event receiver failed" if critical else "event receiver failed",
                extra={
                    "action": "event.receiver_failed",
                    "signal": name,
                    "receiver": receiver_name,
                    "critical": critical,
                },
            )
            if critical:
                raise
        finally:
            outcomes.append((receiver_name, time.perf_counter() - started, failed))

    def _record(self, name: str, outcomes: list[tuple[str, float, bool]]) -> None:
        if not outcomes:
            return
        minute = int(time.time() // 60)
        with self._lock:
            pending = self._pending[(minute, name)]
            for receiver, seconds, failed in outcomes:
                stats = self.stats[(name, receiver)]
                stats.calls += 1
                stats.failures += failed
                stats.seconds += seconds
                pending[1 if failed else 0] += 1
                pending[2] += seconds * 1000
        if self._shared is not None:
            for receiver, seconds, failed in outcomes:
                outcome = "failure" if failed else "success"
                self._shared.calls.labels(name, receiver, outcome).inc()
                self._shared.seconds.labels(name).observe(seconds)

    # --- per-minute counters --------------------------------------------------------------------

    def _maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= FLUSH_INTERVAL:
            self.flush()

    def flush(self) -> None:
        """Hand the buffered per-minute counts to the counter store."""
        with self._lock:
            pending, self._pending = self._pending, defaultdict(lambda: [0, 0, 0.0])
            self._last_flush = time.monotonic()
        if pending:
            self.counters.add(pending)

    def error_rates(self, window_seconds: int = 3600) -> dict[str, dict[str, float]]:
        """Per signal over the last ``window_seconds``: total, failures, rate, average ms."""
        self.flush()
        now = int(time.time() // 60)
        # At least the current minute, however short the window.
        minutes = range(now - max(1, -(-window_seconds // 60)) + 1, now + 1)
        totals = self.counters.read(minutes, [signal.name for signal in ALL_SIGNALS])
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


class _SharedStats:
    """The bus's metrics in prometheus_client's multiprocess mode (same names as the collector)."""

    def __init__(self) -> None:
        self.calls = Counter(
            "relay_event_receiver_calls",
            "Receiver invocations by signal, receiver and outcome",
            ["signal", "receiver", "outcome"],
            registry=None,
        )
        self.seconds = Summary(
            "relay_event_receiver_seconds",
            "Receiver run time by signal",
            ["signal"],
            registry=None,
        )


class _BusCollector(Collector):
    """Per-signal and per-receiver counts and durations of one bus, read at scrape time."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus

    def collect(self) -> Any:
        calls = CounterMetricFamily(
            "relay_event_receiver_calls",
            "Receiver invocations by signal, receiver and outcome",
            labels=["signal", "receiver", "outcome"],
        )
        seconds = SummaryMetricFamily(
            "relay_event_receiver_seconds", "Receiver run time by signal", labels=["signal"]
        )
        with self.bus._lock:
            stats = [
                (key, _Stats(s.calls, s.failures, s.seconds)) for key, s in self.bus.stats.items()
            ]
        per_signal: dict[str, list[float]] = {}
        for (signal, receiver), stat in sorted(stats):
            calls.add_metric([signal, receiver, "success"], stat.calls - stat.failures)
            calls.add_metric([signal, receiver, "failure"], stat.failures)
            total = per_signal.setdefault(signal, [0, 0.0])
            total[0] += stat.calls
            total[1] += stat.seconds
        for signal, (count, total_seconds) in sorted(per_signal.items()):
            seconds.add_metric([signal], count_value=int(count), sum_value=total_seconds)
        yield calls
        yield seconds
