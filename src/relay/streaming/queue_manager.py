"""``AppQueueManager``: Dify's per-run event queue, on a channel every API process can read.

One manager exists per run and per side. The worker's manager claims an attempt, publishes the
run's events (the last one marked final) and notices stop requests; an API process's manager
listens: it yields the run's events from any position, a ping when the run is quiet for
``ping_interval`` and, when the run is stopped without confirming or the listener reaches
``max_execution_time``, a stop event of its own. Ownership (``account-<id>`` or
``end-user-<id>``) is recorded when the first manager of a run is created; only the owner may
set the stop flag.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from relay.config import StreamingSettings
from relay.resilience.outages import is_outage
from relay.streaming.channels import START, RunChannel
from relay.streaming.errors import RunFinishedError, RunStoppedError, UnsafeEventError
from relay.streaming.queue_events import (
    AppQueueEvent,
    PingEvent,
    StopBy,
    StopEvent,
    parse_queue_event,
)
from relay.streaming.run_control import Claim, RunControl, State

log = logging.getLogger(__name__)


class InvokeFrom(StrEnum):
    """Where a run was started from (decides whether its owner is an account or an end user)."""

    SERVICE_API = "service-api"
    WEB_APP = "web-app"
    EXPLORE = "explore"
    DEBUGGER = "debugger"


def owner_of(invoke_from: InvokeFrom | str, user_id: str) -> str:
    """``account-<id>`` for console runs (explore, debugger), ``end-user-<id>`` otherwise."""
    role = (
        "account"
        if InvokeFrom(invoke_from) in (InvokeFrom.EXPLORE, InvokeFrom.DEBUGGER)
        else "end-user"
    )
    return f"{role}-{user_id}"


@dataclass(frozen=True)
class QueueConfig:
    """Timing of listeners and lifetimes of a run's keys (from ``StreamingSettings``)."""

    ping_interval: float = 10.0
    max_execution_time: float = 1200.0
    stop_grace: float = 3.0
    ownership_ttl: int = 3600
    retention: int = 600
    read_block: float = 1.0

    @classmethod
    def from_settings(cls, settings: StreamingSettings, read_block: float = 1.0) -> QueueConfig:
        """The config for ``settings``; ``read_block`` must stay below the Redis socket timeout."""
        return cls(
            ping_interval=settings.ping_interval,
            max_execution_time=settings.max_execution_time,
            stop_grace=settings.stop_grace,
            ownership_ttl=settings.ownership_ttl,
            retention=settings.retention,
            read_block=read_block,
        )


@dataclass(frozen=True)
class StreamItem:
    """What a listener yields: the event's stream id (None for pings and listener-side stops),
    its name, its JSON and whether it ends the stream."""

    id: str | None
    event: str
    data: str
    final: bool = False

    def model(self) -> AppQueueEvent:
        """The typed event."""
        return parse_queue_event(self.data)

    @classmethod
    def local(cls, event: AppQueueEvent, final: bool = False) -> StreamItem:
        """An item made by the listener itself (not in the run's stream, so without an id)."""
        return cls(None, event.event.value, event.model_dump_json(), final)


class AppQueueManager:
    """The event queue of one run (``task_id``), for one user and invoke source.

    The manager that starts a run records its owner (``record_owner``); a listener attaching
    later passes ``record_owner=False`` and reads :attr:`is_owner` instead.
    """

    def __init__(
        self,
        task_id: str,
        user_id: str,
        invoke_from: InvokeFrom | str,
        *,
        channel: RunChannel,
        control: RunControl,
        config: QueueConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        record_owner: bool = True,
    ) -> None:
        if not task_id or not user_id:
            raise ValueError("a queue manager needs a task id and a user id")
        self.task_id = task_id
        self.user_id = user_id
        self.invoke_from = InvokeFrom(invoke_from)
        self.channel = channel
        self.control = control
        self.config = config or QueueConfig()
        self._clock = clock
        self.owner = owner_of(self.invoke_from, user_id)
        if record_owner:
            recorded: str | None = control.register(task_id, self.owner, self.config.ownership_ttl)
        else:
            recorded = control.owner(task_id)
        # Without a record (a listener on a run whose keys expired) the caller's own check decides.
        self.is_owner = recorded in (None, self.owner)
        self.attempt = 0
        self._stopped = False
        self._finished = False
        self._listening = False

    # --- the worker's side ----------------------------------------------------------------------

    def claim(self) -> Claim:
        """Start an attempt (see :meth:`RunControl.claim`); sets :attr:`attempt` when claimed."""
        claim = self.control.claim(self.task_id, self.owner, self.config.ownership_ttl)
        if claim.claimed:
            self.attempt = claim.attempt
        return claim

    def heartbeat(self) -> None:
        """The attempt is alive (keeps the reaper away and the run's keys from expiring)."""
        self.control.heartbeat(self.task_id, self.config.ownership_ttl)

    def release(self, state: State) -> None:
        """The attempt ended; a finished run's keys live on for the retention period.

        With Redis away the release is skipped (logged): the run's events wait in the local
        spool, its keys expire on their own, and a run that stops beating is ended by the
        reaper only if its stream has no final event yet.
        """
        ttl = self.config.retention if state == "finished" else self.config.ownership_ttl
        try:
            self.control.release(self.task_id, state, ttl)
        except Exception as exc:
            if not is_outage(exc):
                raise
            log.warning(
                "run attempt not released: Redis is unreachable",
                extra={"action": "stream.release_skipped", "run_id": self.task_id},
            )

    def poll_stop(self) -> bool:
        """Check the stop flag of this attempt; True (and publishing stops) once it is set.

        While Redis is away no stop can be seen: the run goes on (its events are spooled).
        """
        if not self._stopped and self.attempt:
            try:
                self._stopped = self.control.stop_requested(self.task_id, self.attempt)
            except Exception as exc:
                if not is_outage(exc):
                    raise
        return self._stopped

    def is_stopped(self) -> bool:
        """Whether a stop was noticed (or :meth:`stop_listen` called)."""
        return self._stopped

    def publish(self, event: AppQueueEvent, *, final: bool = False) -> str:
        """Append ``event`` to the run's stream; returns its stream id.

        Raises :class:`UnsafeEventError` for an event holding SQLAlchemy objects,
        :class:`RunStoppedError` for a non-final event after a stop, and
        :class:`RunFinishedError` once the run's final event is in the stream (whoever wrote it).
        """
        ensure_plain(event)
        if self._finished:
            raise RunFinishedError(f"run {self.task_id} has ended; nothing more can be published")
        if self._stopped and not final:
            raise RunStoppedError(f"run {self.task_id} was stopped")
        entry_id = self.channel.append(
            self.task_id, event.event.value, event.model_dump_json(), final=final
        )
        if entry_id is None:
            self._finished = True
            raise RunFinishedError(f"run {self.task_id} has ended; nothing more can be published")
        if final:
            self._finished = True
        return entry_id

    # --- the listener's side --------------------------------------------------------------------

    def listen(
        self, after: str = START, *, until: Callable[[], bool] | None = None
    ) -> Iterator[StreamItem]:
        """The run's events after stream id ``after``, until its final event.

        Pings when nothing was yielded for ``ping_interval``; ends with a stop event of its own
        when a stop was requested and the worker did not confirm within ``stop_grace`` (the run
        is not running anywhere), or when the listener has run ``max_execution_time``. When
        ``until()`` becomes true (its process is shutting down) it ends at the next event
        boundary without a final event, within ``read_block``: the client resumes elsewhere.
        """
        config = self.config
        started = last_yield = self._clock()
        stop_seen: float | None = None
        position = after
        self._listening = True
        while self._listening:
            if until is not None and until():
                return
            now = self._clock()
            left = started + config.max_execution_time - now
            if left <= 0:
                reason = f"the listener reached its maximum time ({config.max_execution_time:g}s)"
                yield StreamItem.local(StopEvent(stopped_by=StopBy.TIMEOUT, reason=reason), True)
                return
            until_ping = last_yield + config.ping_interval - now
            entries = self.channel.read(
                self.task_id, position, block=max(0.0, min(config.read_block, until_ping, left))
            )
            for entry in entries:
                position = entry.id
                yield StreamItem(entry.id, entry.event, entry.data, entry.final)
                if entry.final:
                    return
            now = self._clock()
            if entries:
                last_yield = now
                continue
            if now - last_yield >= config.ping_interval:
                yield StreamItem.local(PingEvent())
                last_yield = self._clock()
            if stop_seen is None:
                stop_seen = now if self.control.stopping(self.task_id) else None
            elif now - stop_seen >= config.stop_grace:
                reason = "stopped; no worker confirmed the stop"
                yield StreamItem.local(
                    StopEvent(stopped_by=StopBy.USER_MANUAL, reason=reason), True
                )
                return

    def stop_listen(self) -> None:
        """End :meth:`listen` at its next step; further non-final publishes raise."""
        self._listening = False
        self._stopped = True

    @staticmethod
    def set_stop_flag(
        control: RunControl,
        task_id: str,
        invoke_from: InvokeFrom | str,
        user_id: str,
        ttl: int = 600,
    ) -> bool:
        """Ask the run to stop, if ``user_id`` (through ``invoke_from``) owns it.

        Returns False for another user's run and for a run that is unknown or has ended.
        """
        if control.owner(task_id) != owner_of(invoke_from, user_id):
            return False
        return control.request_stop(task_id, ttl) is not None


def ensure_plain(event: AppQueueEvent) -> None:
    """Raise :class:`UnsafeEventError` if any value in ``event`` is a SQLAlchemy object."""
    _check(event, event.event.value)


def _check(value: Any, path: str) -> None:
    if isinstance(value, str | int | float | bool) or value is None:
        return
    if _is_sqlalchemy(value):
        raise UnsafeEventError(
            f"event field {path} holds a SQLAlchemy object ({type(value).__name__}); "
            "publish plain data (ids, dicts) instead",
            details={"field": path, "type": type(value).__name__},
        )
    if isinstance(value, BaseModel):
        for name, item in value.__dict__.items():
            _check(item, f"{path}.{name}")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check(key, f"{path}[key]")
            _check(item, f"{path}.{key}")
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")


def _is_sqlalchemy(value: Any) -> bool:
    # Mapped instances carry _sa_instance_state; sessions, rows and results live in sqlalchemy.*.
    return hasattr(value, "_sa_instance_state") or type(value).__module__.startswith("sqlalchemy")
