"""``EventBus``: isolated receivers, critical receivers, strong references, counters and metrics.

Receivers here write ``Tenant`` rows, so "rolled back" and "kept" are row counts. They are
connected to ``app_was_deleted``, whose own handler (the batched app removal) is disconnected
from each test's bus first, so the receivers under test are the only ones.
"""

from __future__ import annotations

import gc
import logging
import time
import weakref
from typing import Any

import pytest
from sqlalchemy import event, func, select

from relay.errors import QuotaExceeded
from relay.events import signals
from relay.events.bus import EventBus, EventContext
from relay.events.counters import COUNTER_PREFIX, RedisEventCounters
from relay.events.payloads import AppDeleted, TenantCreated
from relay.models import Tenant
from relay.runtime import Runtime

SIGNAL = signals.app_was_deleted
PAYLOAD = AppDeleted(tenant_id="t-1", app_id="a-1")


@pytest.fixture(autouse=True)
def _only_test_receivers(runtime: Runtime) -> None:
    for receiver, _ in runtime.bus.receivers(SIGNAL):
        runtime.bus.disconnect(SIGNAL, receiver)


def tenants(runtime: Runtime) -> list[str]:
    with runtime.db.session() as session:
        return sorted(session.scalars(select(Tenant.name)))


def writer(name: str, calls: list[str]) -> Any:
    def receiver(payload: AppDeleted, ctx: EventContext) -> None:
        calls.append(name)
        assert ctx.session is not None
        ctx.session.add(Tenant(name=name))
        ctx.session.flush()

    receiver.__qualname__ = f"writer_{name}"
    return receiver


def failing(name: str, calls: list[str], error: Exception) -> Any:
    def receiver(payload: AppDeleted, ctx: EventContext) -> None:
        calls.append(name)
        assert ctx.session is not None
        ctx.session.add(Tenant(name=name))
        ctx.session.flush()  # a partial write, then the failure
        raise error

    receiver.__qualname__ = f"failing_{name}"
    return receiver


def test_a_failing_receiver_is_isolated(runtime: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    bus, calls = runtime.bus, []
    bus.connect(SIGNAL, writer("before", calls))
    bus.connect(SIGNAL, failing("broken", calls, ValueError("boom")))
    bus.connect(SIGNAL, writer("after", calls))

    with caplog.at_level(logging.ERROR), runtime.db.transaction() as session:
        session.add(Tenant(name="caller"))
        bus.emit(SIGNAL, PAYLOAD, session)
        session.add(Tenant(name="caller-after-emit"))

    assert calls == ["before", "broken", "after"], "connection order, and the rest still ran"
    # The failing receiver's partial write was rolled back with its savepoint; the rest stays.
    assert tenants(runtime) == ["after", "before", "caller", "caller-after-emit"]
    failure = next(r for r in caplog.records if getattr(r, "action", "") == "event.receiver_failed")
    assert failure.exc_info is not None, "logged with its traceback"
    assert failure.receiver.endswith("failing_broken")  # type: ignore[attr-defined]
    stats = {receiver: s for (signal, receiver), s in bus.stats.items() if signal == SIGNAL.name}
    broken = next(s for name, s in stats.items() if name.endswith("failing_broken"))
    assert (broken.calls, broken.failures) == (1, 1)
    assert sum(s.failures for s in stats.values()) == 1


def test_a_critical_receiver_fails_the_callers_transaction(runtime: Runtime) -> None:
    bus, calls = runtime.bus, []
    bus.connect(SIGNAL, writer("first", calls))
    bus.connect(SIGNAL, failing("quota", calls, QuotaExceeded("over")), critical=True)
    bus.connect(SIGNAL, writer("never", calls))

    def request() -> None:
        with runtime.db.transaction() as session:
            session.add(Tenant(name="caller"))
            bus.emit(SIGNAL, PAYLOAD, session)

    with pytest.raises(QuotaExceeded):
        request()

    assert calls == ["first", "quota"], "nothing runs after a critical failure"
    assert tenants(runtime) == [], "the caller's transaction left no rows"
    assert bus.error_rates()[SIGNAL.name]["failures"] == 1


def test_reconnecting_changes_criticality_and_disconnect_removes(runtime: Runtime) -> None:
    bus, calls = runtime.bus, []
    receiver = failing("flaky", calls, ValueError("boom"))
    bus.connect(SIGNAL, receiver, critical=True)
    bus.connect(SIGNAL, receiver, critical=False)
    with runtime.db.transaction() as session:
        bus.emit(SIGNAL, PAYLOAD, session)  # no longer critical: swallowed
    bus.disconnect(SIGNAL, receiver)
    with runtime.db.transaction() as session:
        bus.emit(SIGNAL, PAYLOAD, session)
    assert calls == ["flaky"]


def test_emit_without_a_session_still_isolates(runtime: Runtime) -> None:
    bus, seen = runtime.bus, []

    def boom(payload: AppDeleted, ctx: EventContext) -> None:
        raise RuntimeError("no session to roll back")

    def ok(payload: AppDeleted, ctx: EventContext) -> None:
        seen.append(ctx.session)

    bus.connect(SIGNAL, boom)
    bus.connect(SIGNAL, ok)
    bus.emit(SIGNAL, PAYLOAD)
    assert seen == [None]


def test_payload_type_must_match_the_signal(runtime: Runtime) -> None:
    with pytest.raises(TypeError, match="app_was_deleted carries AppDeleted, got TenantCreated"):
        runtime.bus.emit(SIGNAL, TenantCreated(tenant_id="t", plan="sandbox"))
    with pytest.raises(TypeError):
        runtime.bus.emit(SIGNAL, {"tenant_id": "t", "app_id": "a"})


def test_receivers_are_held_strongly(runtime: Runtime) -> None:
    fired: list[str] = []

    def connect_closure() -> None:
        def closure(payload: AppDeleted, ctx: EventContext) -> None:
            fired.append(payload.app_id)

        runtime.bus.connect(SIGNAL, closure)

    connect_closure()  # the only reference to the closure is now the bus's
    gc.collect()
    runtime.bus.emit(SIGNAL, PAYLOAD)
    assert fired == ["a-1"]


def test_receivers_belong_to_their_bus(runtime: Runtime) -> None:
    """blinker's signals are process-wide; a receiver connected on one bus must not fire for
    another bus (another app in the same process) nor outlive its bus."""
    fired: list[str] = []

    def connect_to(bus: EventBus) -> weakref.ref[Any]:
        def receiver(payload: AppDeleted, ctx: EventContext) -> None:
            fired.append("fired")

        bus.connect(SIGNAL, receiver)
        return weakref.ref(receiver)

    other = EventBus(
        runtime.redis,
        runtime.settings,
        runtime.outbox,
        counters=RedisEventCounters(runtime.redis),
    )
    receiver = connect_to(other)
    runtime.bus.emit(SIGNAL, PAYLOAD)
    assert fired == []
    other.emit(SIGNAL, PAYLOAD)
    assert fired == ["fired"]

    def global_receiver(sender: Any, **kwargs: Any) -> None:
        fired.append("global")

    with SIGNAL.connected_to(global_receiver):  # plain blinker, for ANY sender
        runtime.bus.emit(SIGNAL, PAYLOAD)
    assert fired == ["fired"], "only receivers connected through a bus run"

    bus = weakref.ref(other)
    del other
    gc.collect()
    assert bus() is None, "the signal does not keep a bus alive"
    assert receiver() is None, "nor the receivers of a bus that is gone"


def test_a_muted_signal_calls_nobody(runtime: Runtime) -> None:
    fired: list[str] = []
    runtime.bus.connect(SIGNAL, lambda payload, ctx: fired.append("x"))
    with SIGNAL.muted():
        runtime.bus.emit(SIGNAL, PAYLOAD)
    assert fired == []


def test_per_minute_counters_and_error_rates(runtime: Runtime) -> None:
    bus, calls = runtime.bus, []
    bus.connect(SIGNAL, writer("ok", calls))
    bus.connect(SIGNAL, failing("bad", calls, ValueError("boom")))
    for _ in range(3):
        with runtime.db.transaction() as session:
            bus.emit(SIGNAL, PAYLOAD, session)
    bus.flush()

    minute = int(time.time() // 60)
    keys = [f"{COUNTER_PREFIX}{m}:{SIGNAL.name}" for m in (minute - 1, minute)]
    rows = [runtime.redis.hgetall(k) for k in keys]
    assert sum(int(r.get("success", 0)) for r in rows) == 3
    assert sum(int(r.get("failure", 0)) for r in rows) == 3
    assert all(float(r["total_ms"]) >= 0 for r in rows if r)
    assert 0 < runtime.redis.ttl(next(k for k, r in zip(keys, rows, strict=True) if r)) <= 86400

    rates = bus.error_rates()[SIGNAL.name]
    assert (rates["total"], rates["failures"], rates["error_rate"]) == (6, 3, 0.5)
    assert rates["avg_ms"] >= 0
    assert bus.error_rates(window_seconds=30)[SIGNAL.name]["total"] >= 0, "sub-minute window"
    assert (
        SIGNAL.name
        not in EventBus(
            runtime.redis,
            runtime.settings,
            runtime.outbox,
            counters=RedisEventCounters(runtime.redis),
        ).stats
    )


def test_prometheus_counters_are_exported(runtime: Runtime) -> None:
    calls: list[str] = []
    runtime.bus.connect(SIGNAL, writer("ok", calls))
    runtime.bus.connect(SIGNAL, failing("bad", calls, ValueError("boom")))
    with runtime.db.transaction() as session:
        runtime.bus.emit(SIGNAL, PAYLOAD, session)

    body = runtime.metrics.render().decode()
    calls_lines = [
        line
        for line in body.splitlines()
        if line.startswith("relay_event_receiver_calls_total{") and SIGNAL.name in line
    ]
    assert any('outcome="failure"' in line and line.endswith(" 1.0") for line in calls_lines)
    assert any('outcome="success"' in line and line.endswith(" 1.0") for line in calls_lines)
    assert f'relay_event_receiver_seconds_count{{signal="{SIGNAL.name}"}} 2.0' in body


def test_relays_own_handlers_are_registered_in_order(runtime: Runtime) -> None:
    names = [r.__name__ for r, _ in runtime.bus.receivers(signals.tenant_was_created)]
    assert names == ["create_default_quotas", "cache_tenant_plan"]
    critical = {r.__name__: c for r, c in runtime.bus.receivers(signals.message_was_created)}
    assert critical == {"deduct_provider_quota": True}


def test_failures_do_not_leak_counts_between_tests(runtime: Runtime) -> None:
    # A fresh runtime (and bus) per test: earlier tests' receivers are gone with their bus.
    assert runtime.bus.receivers(SIGNAL) == []
    with runtime.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Tenant)) == 0


def test_only_receivers_that_write_get_a_savepoint(runtime: Runtime) -> None:

    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.upper())

    bus, calls = runtime.bus, []

    def reader(payload: AppDeleted, ctx: EventContext) -> None:
        calls.append("reader")

    bus.connect(SIGNAL, reader, writes=False)
    event.listen(runtime.db.engine, "before_cursor_execute", record)
    try:
        with runtime.db.transaction() as session:
            session.add(Tenant(name="caller"))
            session.flush()
            bus.emit(SIGNAL, PAYLOAD, session)
        without = [s for s in statements if "SAVEPOINT" in s]
        bus.connect(SIGNAL, writer("w", calls))
        statements.clear()
        with runtime.db.transaction() as session:
            bus.emit(SIGNAL, PAYLOAD, session)
        with_writer = [s for s in statements if "SAVEPOINT" in s]
    finally:
        event.remove(runtime.db.engine, "before_cursor_execute", record)
    assert calls == ["reader", "reader", "w"]
    assert without == [], "a receiver that writes nothing runs without a savepoint"
    assert with_writer, "a receiver that writes rows runs in its own savepoint"
