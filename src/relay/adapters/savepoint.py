"""A SAVEPOINT opened only when the code inside it first touches the database.

``lazy_savepoint(session)`` isolates a piece of work inside the caller's transaction (an event
receiver, say) the way ``session.begin_nested()`` does, but emits ``SAVEPOINT`` only when that
work first flushes or runs a statement through the session. Work that never touches the database
(a receiver that appends to a list, enqueues after-commit work, writes to Redis) costs no round
trip; work that does gets its savepoint before its first statement and keeps the full isolation:

- it fails after writing: ``ROLLBACK TO SAVEPOINT`` undoes its rows alone (the caller's stay,
  and on PostgreSQL the transaction is usable again);
- it fails before any statement: the objects it added to the session are expunged, the ones it
  changed or deleted are restored from the database on next access; nothing reached the server;
- it succeeds with objects still pending: they are flushed inside a savepoint of their own, so
  that a flush failure is its failure, not the caller's commit's.

The savepoint opens on the session's ``before_flush`` (during a flush, so the flush runs inside
it) and ``do_orm_execute`` (every ``session.execute``, ``scalar``, ``get`` and lazy load) events,
listened for once per session factory (``install``). A statement sent on ``session.connection()``
directly is not seen: code that does so calls ``before_statement(session)`` first, or opens its
own ``begin_nested()``. A session from a factory without the listeners gets an eager
``begin_nested()`` instead.

Guards nest: a guard entered inside another one (an event emitted by a receiver) opens the
enclosing guard's savepoint first, so the outer failure still undoes the inner work.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

_GUARD = "relay_lazy_savepoint"
_HOOKED = "relay_lazy_savepoint_hooked"


class _Guard:
    __slots__ = ("nested", "parent", "session")

    def __init__(self, session: Session, parent: _Guard | None) -> None:
        self.session = session
        self.parent = parent
        self.nested: SessionTransaction | None = None

    def _begin_chain(self) -> None:
        """``begin_nested()`` for every unopened guard from the outermost to this one (the
        session has nothing pending, or is flushing, so no flush happens outside a savepoint)."""
        chain: list[_Guard] = []
        guard: _Guard | None = self
        while guard is not None and guard.nested is None:
            chain.append(guard)
            guard = guard.parent
        for unopened in reversed(chain):
            unopened.nested = self.session.begin_nested()

    def open(self) -> None:
        """Open the savepoint now (outside a flush)."""
        if self.nested is not None:
            return
        if _has_pending(self.session):
            # ``begin_nested()`` would flush the pending objects before its SAVEPOINT; flushing
            # first makes ``before_flush`` open the savepoint, and the flush runs inside it.
            self.session.flush()
        if self.nested is None:
            self._begin_chain()


def _has_pending(session: Session) -> bool:
    # ``_is_clean`` is what ``flush()`` itself asks; the public ``new``, ``dirty`` and
    # ``deleted`` build three sets (ten times the cost, paid twice per receiver).
    return not session._is_clean()


def _discard_pending(session: Session) -> None:
    """Forget the session changes made since the guard began (nothing of them was flushed)."""
    for obj in list(session.new):
        session.expunge(obj)
    for obj in list(session.deleted):
        # Unflushed: the row is still there. Re-attached, the object is persistent again.
        session.expunge(obj)
        session.add(obj)
        session.expire(obj)
    for obj in list(session.dirty):
        session.expire(obj)


def _before_flush(session: Session, _context: Any, _instances: Any) -> None:
    guard = session.info.get(_GUARD)
    if guard is not None and guard.nested is None:
        guard._begin_chain()


def _before_execute(state: Any) -> None:
    before_statement(state.session)


def before_statement(session: Session) -> None:
    """Open the enclosing lazy savepoints now: ``session`` is about to send a statement on
    ``session.connection()`` (which the listeners do not see), and it must run inside them."""
    guard = session.info.get(_GUARD)
    if guard is not None and guard.nested is None:
        guard.open()


def install(factory: sessionmaker[Any]) -> None:
    """Listen for the events a lazy savepoint needs on every session of ``factory`` (its ``info``
    must be the factory's own dict: the flag that says so is set in it)."""
    event.listen(factory, "before_flush", _before_flush)
    event.listen(factory, "do_orm_execute", _before_execute)
    factory.kw.setdefault("info", {})[_HOOKED] = True


class lazy_savepoint:
    """Run the body isolated in a savepoint of ``session``'s transaction, opened on first use.

    An exception from the body undoes its database work and its pending session changes, then
    propagates; the caller's earlier work in the transaction stays. A class rather than a
    generator: it is entered once per event receiver, and the generator's overhead is not free.
    """

    __slots__ = ("eager", "guard", "parent", "session")

    def __init__(self, session: Session) -> None:
        self.session = session
        self.eager: SessionTransaction | None = None
        self.parent: _Guard | None = None
        self.guard: _Guard | None = None

    def __enter__(self) -> None:
        session = self.session
        if not session.info.get(_HOOKED):
            self.eager = session.begin_nested()
            self.eager.__enter__()
            return
        parent = self.parent = session.info.get(_GUARD)
        if _has_pending(session):
            # The caller's pending objects: flushed outside this savepoint (as ``begin_nested``
            # does), so that rolling it back cannot take them along; inside an enclosing guard,
            # in that guard's savepoint.
            if parent is not None:
                parent.open()
            session.flush()
        self.guard = session.info[_GUARD] = _Guard(session, parent)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.eager is not None:
            self.eager.__exit__(exc_type, exc, tb)
            return
        session, guard = self.session, self.guard
        assert guard is not None
        session.info[_GUARD] = self.parent
        try:
            if exc_type is None:
                if guard.nested is None and _has_pending(session):
                    session.info[_GUARD] = guard
                    try:
                        guard.open()
                    finally:
                        session.info[_GUARD] = self.parent
                if guard.nested is not None:
                    guard.nested.commit()
                return
        except BaseException:
            self._undo(guard)
            raise
        self._undo(guard)

    def _undo(self, guard: _Guard) -> None:
        if guard.nested is not None:
            guard.nested.rollback()
        else:
            _discard_pending(self.session)
