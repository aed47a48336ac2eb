"""The task middleware chain: ordered hooks around every task message's life.

A ``TaskMiddleware`` overrides the hooks it needs:

- ``before_publish(message)``: a message is about to leave this process (add headers);
- ``around(call, proceed)``: wrap the task body (context, leases, spans); must call ``proceed``
  exactly once, or raise instead;
- ``decide(call, error)``: judge a failure (the first middleware that answers wins);
- ``on_start``, ``on_success``, ``on_retry``, ``on_dead``, ``on_abandon``: observe the outcome.

The composition root registers the middlewares in order (``TaskChain.use``); the first one is
the outermost ``around``. ``RelayTask`` runs every execution through the chain: worker
deliveries and ``apply()`` alike, so eager execution records, retries and dead-letters just as a
worker does. New cross-cutting behaviour (tracing, error reporting, breakers) is one more
middleware, never another branch in the task base.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from relay.retry import RetryDecision, Verdict

Proceed = Callable[[], Any]
Retry = Callable[[BaseException, float], Any]


@dataclass
class TaskCall:
    """One execution of a task message, as the chain sees it."""

    task: Any  # the Celery task instance (its ``request`` is this execution's)
    task_id: str
    name: str
    queue: str
    attempt: int
    worker: str
    tenant_id: str | None
    args: list[Any]
    kwargs: dict[str, Any]
    headers: dict[str, Any]
    idempotency_key: str | None
    eager: bool = False
    started: float = field(default_factory=time.perf_counter)
    # What middlewares hand to the task body or to each other (e.g. the effect guard).
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def request(self) -> Any:
        """Celery's request of this execution."""
        return self.task.request

    def elapsed(self) -> float:
        """Seconds since the call started."""
        return time.perf_counter() - self.started


@dataclass
class OutgoingMessage:
    """A task message about to be published (``headers`` may be changed)."""

    task_name: str
    task_id: str | None
    queue: str | None
    headers: MutableMapping[str, Any]
    args: Any = None
    kwargs: Any = None


_CURRENT: ContextVar[TaskCall | None] = ContextVar("relay_task_call", default=None)


def current_call() -> TaskCall | None:
    """The task execution running in this context (``None`` outside a task)."""
    return _CURRENT.get()


class TaskMiddleware:
    """Base class of a middleware: every hook does nothing."""

    def before_publish(self, message: OutgoingMessage) -> None:
        """Called before a message leaves this process."""

    def on_start(self, call: TaskCall) -> None:
        """Called before the body runs (outermost middleware first)."""

    def around(self, call: TaskCall, proceed: Proceed) -> Any:
        """Wrap the body; return what ``proceed()`` returned."""
        return proceed()

    def decide(self, call: TaskCall, error: BaseException) -> RetryDecision | None:
        """Judge a failure: ``None`` leaves it to the next middleware."""
        return None

    def on_success(self, call: TaskCall, result: Any) -> None:
        """The body returned ``result``."""

    def on_retry(self, call: TaskCall, error: BaseException, decision: RetryDecision) -> None:
        """The body failed and will run again after ``decision.delay`` seconds."""

    def on_dead(self, call: TaskCall, error: BaseException, decision: RetryDecision) -> None:
        """The body failed for good (fatal, out of attempts or out of time), or its work failed
        (``decision.verdict`` is ``Verdict.FAILED``: an ``OutcomeFailed``, never dead-lettered)."""

    def on_abandon(self, call: TaskCall, reason: BaseException) -> None:
        """The execution ended without an outcome of its own (self-retry, dropped copy)."""


_DEFAULT_DECISION = RetryDecision(Verdict.DEAD, reason="no_policy")


class TaskChain:
    """The ordered middlewares of one Celery app."""

    def __init__(self, passthrough: tuple[type[BaseException], ...] = ()) -> None:
        """``passthrough``: exceptions that hand control back to the task framework (Celery's
        Retry, Ignore, Reject): not failures, so no decision is taken on them."""
        self._middlewares: list[TaskMiddleware] = []
        self._lock = threading.Lock()
        self._passthrough = passthrough

    def use(self, *middlewares: TaskMiddleware) -> TaskChain:
        """Append ``middlewares`` (innermost last); returns the chain."""
        with self._lock:
            self._middlewares.extend(middlewares)
        return self

    @property
    def middlewares(self) -> tuple[TaskMiddleware, ...]:
        """The registered middlewares, outermost first."""
        return tuple(self._middlewares)

    def find(self, kind: type[Any]) -> Any:
        """The first middleware of type ``kind``, or ``None``."""
        return next((m for m in self._middlewares if isinstance(m, kind)), None)

    # --- publish side ---------------------------------------------------------------------------

    def before_publish(self, message: OutgoingMessage) -> None:
        """Let every middleware see (and stamp) an outgoing message."""
        for middleware in self._middlewares:
            middleware.before_publish(message)

    # --- process side ---------------------------------------------------------------------------

    def run(
        self, call: TaskCall, body: Proceed, retry: Callable[[BaseException, float], Any]
    ) -> Any:
        """Run ``body`` through the chain; a failure the policy retries is handed to
        ``retry(error, delay)``, whose return value (if it does not raise) is the result."""
        token = _CURRENT.set(call)
        try:
            return self._run(call, body, retry)
        finally:
            _CURRENT.reset(token)

    def _run(
        self, call: TaskCall, body: Proceed, retry: Callable[[BaseException, float], Any]
    ) -> Any:
        middlewares = self.middlewares
        for middleware in middlewares:
            middleware.on_start(call)
        proceed = body
        for middleware in reversed(middlewares):
            proceed = _bind(middleware, call, proceed)
        try:
            result = proceed()
        except self._passthrough as reason:
            for middleware in middlewares:
                middleware.on_abandon(call, reason)
            raise
        except Exception as error:
            decision = self.decide(call, error)
            if decision.verdict is Verdict.RETRY:
                for middleware in middlewares:
                    middleware.on_retry(call, error, decision)
                # ``retry`` raises Celery's retry (worker) or runs the next attempt now (eager).
                return retry(error, decision.delay)
            for middleware in middlewares:
                middleware.on_dead(call, error, decision)
            raise
        for middleware in middlewares:
            middleware.on_success(call, result)
        return result

    def decide(self, call: TaskCall, error: BaseException) -> RetryDecision:
        """The first decision a middleware takes on ``error`` (dead when none does)."""
        for middleware in self._middlewares:
            decision = middleware.decide(call, error)
            if decision is not None:
                return decision
        return _DEFAULT_DECISION


def _bind(middleware: TaskMiddleware, call: TaskCall, proceed: Proceed) -> Proceed:
    def step() -> Any:
        return middleware.around(call, proceed)

    return step


# Headers Celery sets itself; the rest are relay's (idempotency key, tenant, replay link...).
_CELERY_HEADERS = frozenset(
    {"lang", "task", "id", "shadow", "eta", "expires", "group", "group_index", "retries",
     "timelimit", "root_id", "parent_id", "argsrepr", "kwargsrepr", "origin", "ignore_result",
     "replaced_task_nesting", "stamped_headers", "stamps"}
)  # fmt: skip


def relay_headers(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """The message headers relay put there (JSON-safe), without Celery's own."""
    return {k: v for k, v in (headers or {}).items() if k not in _CELERY_HEADERS}
