"""``after_commit``: the Redis side of a unit of work runs once its transaction has committed."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from relay.adapters.sql import after_commit
from relay.runtime import Runtime


def test_callbacks_run_after_the_outer_commit_and_never_after_a_rollback(
    runtime: Runtime,
) -> None:
    seen: list[str] = []
    with runtime.db.transaction() as session:
        after_commit(session, lambda: seen.append("committed"))
        with session.begin_nested():
            session.execute(text("SELECT 1"))
        assert seen == [], "a released savepoint is not the commit"
    assert seen == ["committed"]

    def failing_unit_of_work() -> None:
        with runtime.db.transaction() as session:
            after_commit(session, lambda: seen.append("rolled back"))
            raise RuntimeError("the unit of work fails")

    with pytest.raises(RuntimeError):
        failing_unit_of_work()
    assert seen == ["committed"]


def test_a_failing_callback_does_not_undo_the_commit(runtime: Runtime) -> None:
    seen: list[str] = []

    def fail() -> None:
        raise ConnectionError("redis is down")

    with runtime.db.transaction() as session:
        after_commit(session, fail)
        after_commit(session, lambda: seen.append("next"))
    assert seen == ["next"]
