"""Waiting on real services without blind sleeps: poll a condition against a deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from relay.runtime import Runtime


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    """Poll ``condition`` until it returns something truthy (returned) or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.02)


def lock_waiters(runtime: Runtime) -> int:
    """Sessions of this database waiting for a lock (PostgreSQL; SQLite reports 1)."""
    if runtime.db.is_sqlite:
        return 1  # SQLite serialises write transactions: there is no lock wait to observe
    with runtime.db.engine.connect() as conn:
        query = text(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return int(conn.execute(query).scalar() or 0)


def run_blocked(runtime: Runtime, work: Callable[[], Any]) -> Callable[[], Any]:
    """Start ``work`` in a thread, return once it waits for a lock; the result joins it."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = work()
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    wait_until(lambda: lock_waiters(runtime), timeout=20, what="the transaction to block")

    def join() -> Any:
        thread.join(timeout=30)
        assert not thread.is_alive(), "the blocked transaction never finished"
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("value")

    return join
