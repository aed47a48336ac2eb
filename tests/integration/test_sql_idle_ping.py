"""Pooled PostgreSQL connections are pinged only after sitting idle, and a dead one is replaced."""

from __future__ import annotations

import os
import time

import pytest
from sqlalchemy import text

from relay.adapters.sql import Database

pytestmark = pytest.mark.skipif(
    not os.environ.get("RELAY_DATABASE_URL"), reason="pooled connections: PostgreSQL only"
)


def _backend_pid(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(text("SELECT pg_backend_pid()")) or 0)


def test_an_idle_connection_the_server_closed_is_replaced_on_checkout() -> None:
    db = Database(os.environ["RELAY_DATABASE_URL"], pool_size=1, ping_idle=0.2)
    killer = Database(os.environ["RELAY_DATABASE_URL"], pool_size=1)
    try:
        first = _backend_pid(db)
        with killer.transaction() as session:
            session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        time.sleep(0.3)
        second = _backend_pid(db)  # no error: the ping found the connection dead
        assert second != first
    finally:
        db.close()
        killer.close()


def test_a_connection_in_steady_use_is_pinged_only_after_idling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = Database(os.environ["RELAY_DATABASE_URL"], pool_size=1, ping_idle=0.5)
    pings: list[object] = []
    ping = db.engine.dialect.do_ping

    def counted(dbapi_conn: object) -> bool:
        pings.append(dbapi_conn)
        return bool(ping(dbapi_conn))

    monkeypatch.setattr(db.engine.dialect, "do_ping", counted)
    try:
        pid = _backend_pid(db)
        assert [_backend_pid(db) for _ in range(20)] == [pid] * 20
        assert pings == []
        time.sleep(0.6)
        assert _backend_pid(db) == pid
        assert len(pings) == 1
    finally:
        db.close()
