"""Idempotent effects: a task's effect applies at most once per idempotency key.

``EffectStore`` is the port (the processed-key claim and the transaction it lives in);
``SqlEffects`` keeps the keys in the ``processed_keys`` table, claimed in the same transaction as
the effect; ``RedisEffects`` keeps them in Redis, claimed in the same ``MULTI`` as an effect that
lives in Redis. ``IdempotentEffects`` is the middleware that hands the store to each task execution.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

from redis.exceptions import WatchError
from sqlalchemy import bindparam, text

from relay.adapters.sql import Database
from relay.models import ProcessedKey, utcnow
from relay.worker.middleware import TaskCall, TaskMiddleware

if TYPE_CHECKING:
    import redis
    from redis.client import Pipeline
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

_KEY_LENGTH = 128  # ProcessedKey.idempotency_key


class EffectStore:
    """Where processed keys live; subclasses say how a key is claimed."""

    def key(self, idempotency_key: str | None, scope: str | None = None) -> str | None:
        """The processed key of a message (and ``scope``); ``None`` without an idempotency key."""
        if idempotency_key is None:
            return None
        key = idempotency_key if scope is None else f"{idempotency_key}:{scope}"
        if len(key) > _KEY_LENGTH:
            key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
        return key

    def effect(self, task_name: str, key: str | None) -> AbstractContextManager[Any]:
        """A unit of work that yields a session, or ``None`` when ``key`` was processed."""
        raise NotImplementedError

    def processed(self, key: str) -> bool:
        """Whether ``key``'s effect was applied."""
        raise NotImplementedError


class SqlEffects(EffectStore):
    """Processed keys in the database, claimed inside the effect's own transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # Built once: the claim runs on every effect, and building the statement (and its
        # cache key) each time costs more Python than the round trip.
        columns = ProcessedKey.__table__.c
        self._claim_statement = text(
            f"INSERT INTO {ProcessedKey.__tablename__} (idempotency_key, task_name, processed_at)"
            " VALUES (:key, :task, :at) ON CONFLICT (idempotency_key) DO NOTHING"
            " RETURNING idempotency_key"
        ).bindparams(bindparam("at", type_=columns.processed_at.type))

    @contextmanager
    def effect(self, task_name: str, key: str | None) -> Iterator[Session | None]:
        """A concurrent duplicate blocks on the unique key until the first commits, then sees the
        conflict and skips (PostgreSQL); SQLite serialises writers outright."""
        with self.db.transaction() as session:
            if key is not None and not self._claim(session, task_name, key):
                log.info(
                    "duplicate delivery skipped",
                    extra={"action": "task.duplicate", "task": task_name, "key": key},
                )
                yield None
                return
            yield session

    def _claim(self, session: Session, task_name: str, key: str) -> bool:
        """Insert ``key`` in one round trip; False when it is there already.

        ``INSERT ... ON CONFLICT DO NOTHING RETURNING``: a concurrent duplicate waits for the
        first claim's transaction and then sees the conflict (no savepoint, no prior SELECT).
        """
        params = {"key": key, "task": task_name, "at": utcnow()}
        # On the session's connection: the same transaction, without the ORM's execute events
        # (nothing of the ORM is involved in a claim).
        return session.connection().execute(self._claim_statement, params).first() is not None

    def processed(self, key: str) -> bool:
        with self.db.session() as session:
            return session.get(ProcessedKey, key) is not None


class RedisEffects:
    """Processed keys in Redis, for effects that live in Redis: claimed in the same ``MULTI`` as
    the effect's own commands, so the key and the effect are applied together or not at all.

    ``effect()`` watches the key, yields a transactional pipeline for the effect's commands (or
    ``None`` when the key is there), then executes them with ``SET key NX EX ttl`` in one
    ``EXEC``. A concurrent duplicate that claimed the key in between makes ``EXEC`` fail; the
    key is then read again, and this execution skips. The key expires after ``ttl`` seconds
    (redeliveries come within hours; a key kept forever would grow Redis without bound).
    """

    PREFIX = "relay:effect:"

    def __init__(self, client: redis.Redis, ttl: int = 7 * 86400) -> None:
        self.redis = client
        self.ttl = ttl

    @contextmanager
    def effect(self, task_name: str, key: str | None) -> Iterator[Pipeline | None]:
        with self.redis.pipeline(transaction=True) as pipe:
            name = self.PREFIX + key if key is not None else None
            if name is not None:
                pipe.watch(name)  # type: ignore[no-untyped-call]
                if pipe.exists(name):
                    log.info(
                        "duplicate delivery skipped",
                        extra={"action": "task.duplicate", "task": task_name, "key": key},
                    )
                    yield None
                    return
            pipe.multi()
            yield pipe
            if name is not None:
                pipe.set(name, task_name, nx=True, ex=self.ttl)
            try:
                pipe.execute()
            except WatchError:
                # Another delivery applied the effect first: this one's commands were dropped.
                log.info(
                    "duplicate delivery skipped",
                    extra={"action": "task.duplicate", "task": task_name, "key": key},
                )

    def processed(self, key: str) -> bool:
        """Whether ``key``'s Redis effect was applied."""
        return bool(self.redis.exists(self.PREFIX + key))


class IdempotentEffects(TaskMiddleware):
    """Hands the effect stores to every execution (``RelayTask.effect()`` and
    ``RelayTask.redis_effect()`` use them)."""

    def __init__(self, store: EffectStore, redis_store: RedisEffects | None = None) -> None:
        self.store = store
        self.redis_store = redis_store

    def on_start(self, call: TaskCall) -> None:
        call.context["effects"] = self.store
        if self.redis_store is not None:
            call.context["redis_effects"] = self.redis_store
