"""Receivers in a lazy savepoint: one only for those that touch the database, isolation kept.

Rows are ``Tenant`` rows; the statements the engine sends are recorded, so "no savepoint" is the
absence of ``SAVEPOINT`` on the wire, not an internal flag.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, select, text

from relay.adapters.savepoint import lazy_savepoint
from relay.events import signals
from relay.events.bus import EventContext
from relay.events.payloads import AppDeleted
from relay.models import Tenant
from relay.runtime import Runtime

SIGNAL = signals.app_was_deleted
PAYLOAD = AppDeleted(tenant_id="t-1", app_id="a-1")


@pytest.fixture(autouse=True)
def _only_test_receivers(runtime: Runtime) -> None:
    for receiver, _ in runtime.bus.receivers(SIGNAL):
        runtime.bus.disconnect(SIGNAL, receiver)


@pytest.fixture
def savepoints(runtime: Runtime) -> Iterator[list[str]]:
    """The SAVEPOINT statements (open, release, rollback-to) the engine sends."""
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "SAVEPOINT" in statement.upper():
            sent.append(statement.split()[0].upper())

    event.listen(runtime.db.engine, "before_cursor_execute", record)
    yield sent
    event.remove(runtime.db.engine, "before_cursor_execute", record)


def tenants(runtime: Runtime) -> list[str]:
    with runtime.db.session() as session:
        return sorted(session.scalars(select(Tenant.name)))


def writer(name: str, *, flush: bool = True, fail: bool = False) -> Any:
    def receiver(payload: AppDeleted, ctx: EventContext) -> None:
        session = ctx.require_session()
        session.add(Tenant(name=name))
        if flush:
            session.flush()
        if fail:
            raise RuntimeError(f"{name} failed")

    receiver.__qualname__ = f"writer_{name}"
    return receiver


def test_a_receiver_that_fails_after_writing_rolls_back_only_its_writes(
    runtime: Runtime, savepoints: list[str]
) -> None:
    bus = runtime.bus
    bus.connect(SIGNAL, writer("before"))
    bus.connect(SIGNAL, writer("broken", fail=True))
    bus.connect(SIGNAL, writer("after"))
    with runtime.db.transaction() as session:
        session.add(Tenant(name="caller"))
        bus.emit(SIGNAL, PAYLOAD, session)
    assert tenants(runtime) == ["after", "before", "caller"]
    # Three receivers touched the database: three savepoints, the broken one rolled back.
    assert savepoints.count("SAVEPOINT") == 3
    assert savepoints.count("ROLLBACK") == 1


def test_a_failing_receiver_that_touches_nothing_rolls_back_nothing(
    runtime: Runtime, savepoints: list[str]
) -> None:
    calls: list[str] = []

    def no_rows(payload: AppDeleted, ctx: EventContext) -> None:
        calls.append("no_rows")
        raise RuntimeError("fails without a statement")

    bus = runtime.bus
    bus.connect(SIGNAL, writer("before"))
    bus.connect(SIGNAL, no_rows)  # default flags: a savepoint if it ever needs one
    bus.connect(SIGNAL, writer("after"))
    with runtime.db.transaction() as session:
        session.add(Tenant(name="caller"))
        bus.emit(SIGNAL, PAYLOAD, session)
    assert calls == ["no_rows"]
    assert tenants(runtime) == ["after", "before", "caller"]
    assert savepoints.count("SAVEPOINT") == 2, "only the two writers opened one"
    assert "ROLLBACK" not in savepoints


def test_receivers_that_touch_nothing_send_no_savepoint(
    runtime: Runtime, savepoints: list[str]
) -> None:
    seen: list[int] = []
    for i in range(3):
        runtime.bus.connect(SIGNAL, lambda p, ctx, i=i: seen.append(i))
    with runtime.db.transaction() as session:
        runtime.bus.emit(SIGNAL, PAYLOAD, session)
    assert seen == [0, 1, 2]
    assert savepoints == []


def test_unflushed_changes_of_a_failing_receiver_are_discarded(
    runtime: Runtime, savepoints: list[str]
) -> None:
    with runtime.db.transaction() as session:
        session.add_all([Tenant(name="keep"), Tenant(name="rename-me")])

    def meddler(payload: AppDeleted, ctx: EventContext) -> None:
        session = ctx.require_session()
        by_name = {t.name: t for t in session.scalars(select(Tenant))}
        session.delete(by_name["keep"])
        by_name["rename-me"].name = "renamed"
        session.add(Tenant(name="added"))
        raise RuntimeError("fails before flushing")

    runtime.bus.connect(SIGNAL, meddler)
    with runtime.db.transaction() as session:
        session.add(Tenant(name="caller"))
        runtime.bus.emit(SIGNAL, PAYLOAD, session)
    assert tenants(runtime) == ["caller", "keep", "rename-me"]
    # The SELECT opened the savepoint; its rollback discarded the pending changes with it.
    assert savepoints == ["SAVEPOINT", "ROLLBACK"]


def test_pending_changes_without_a_statement_are_discarded_too(runtime: Runtime) -> None:
    runtime.bus.connect(SIGNAL, writer("pending", flush=False, fail=True))
    runtime.bus.connect(SIGNAL, writer("flushed-later", flush=False))
    with runtime.db.transaction() as session:
        runtime.bus.emit(SIGNAL, PAYLOAD, session)
    assert tenants(runtime) == ["flushed-later"]


def test_a_failing_statement_leaves_the_callers_transaction_usable(
    runtime: Runtime, savepoints: list[str]
) -> None:
    def bad_sql(payload: AppDeleted, ctx: EventContext) -> None:
        ctx.require_session().execute(text("SELECT * FROM no_such_table"))

    runtime.bus.connect(SIGNAL, bad_sql)
    runtime.bus.connect(SIGNAL, writer("after"))
    with runtime.db.transaction() as session:
        session.add(Tenant(name="caller"))
        runtime.bus.emit(SIGNAL, PAYLOAD, session)
        session.add(Tenant(name="caller-after"))
    assert tenants(runtime) == ["after", "caller", "caller-after"]
    assert savepoints.count("ROLLBACK") == 1


def test_a_failing_flush_at_the_end_is_the_receivers_failure(runtime: Runtime) -> None:
    def null_name(payload: AppDeleted, ctx: EventContext) -> None:
        ctx.require_session().add(Tenant(name=None))  # NOT NULL: fails when flushed

    runtime.bus.connect(SIGNAL, null_name)
    runtime.bus.connect(SIGNAL, writer("after"))
    with runtime.db.transaction() as session:
        session.add(Tenant(name="caller"))
        runtime.bus.emit(SIGNAL, PAYLOAD, session)
    assert tenants(runtime) == ["after", "caller"]


def test_an_outer_failure_undoes_the_inner_guards_writes(runtime: Runtime) -> None:
    with runtime.db.transaction() as session:
        session.add(Tenant(name="caller"))

        def outer() -> None:
            with lazy_savepoint(session):
                session.add(Tenant(name="outer"))  # pending, not flushed, when the inner starts
                with lazy_savepoint(session):
                    session.add(Tenant(name="inner"))
                    session.flush()
                raise RuntimeError("outer fails after the inner one succeeded")

        with pytest.raises(RuntimeError):
            outer()
        with lazy_savepoint(session):
            session.add(Tenant(name="next"))
    assert tenants(runtime) == ["caller", "next"]
