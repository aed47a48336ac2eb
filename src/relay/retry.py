"""Retry policy as data: given an error and the attempt number, decide retry (when) or give up.

Unknown exceptions retry by default until the policy is exhausted, because most failures in this
kind of system (a broker blip, a database failover, a provider timeout) are transient. Errors that
can never succeed are raised as ``FatalTaskError`` and go to the dead letters at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum

from relay.errors import TaskError

_RNG = random.Random()


class RetryableTaskError(TaskError):
    """A transient failure; retry, optionally after ``delay`` seconds instead of the backoff."""

    def __init__(self, message: str, *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class FatalTaskError(TaskError):
    """A failure no retry can fix (bad input, a rejected address): dead-letter at once."""


class OutcomeFailed(TaskError):
    """The task ran to its end and the work it carried failed (a workflow run whose graph failed).

    Celery records FAILURE, so its tools show the failure; there is no retry and no dead letter,
    because running the same work again fails the same way and an operator has nothing to
    replay: the failure belongs to the work's own record (e.g. the workflow run's).
    """


class Verdict(StrEnum):
    RETRY = "retry"
    DEAD = "dead"
    FAILED = "failed"  # an ``OutcomeFailed``: no retry, no dead letter


@dataclass(frozen=True)
class RetryDecision:
    """What to do after a failure; ``delay`` applies to RETRY, ``reason`` to DEAD."""

    verdict: Verdict
    delay: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with a cap and full jitter, up to ``max_attempts`` runs in all.

    ``retry_on`` lists retryable types (empty: every exception that is not fatal); ``fatal_on``
    lists types that are never retried, besides ``FatalTaskError``.
    """

    max_attempts: int = 3
    base_delay: float = 1.0
    max_delay: float = 300.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = ()
    fatal_on: tuple[type[BaseException], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("need 0 <= base_delay <= max_delay")

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before the run after ``attempt`` (1-based): base * 2^(attempt-1), capped."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        if not self.jitter:
            return ceiling
        # Jitter between half and all of the ceiling: spreads retries, still grows each time.
        source = rng or _RNG
        return source.uniform(ceiling / 2, ceiling)

    def decide(
        self, error: BaseException, attempt: int, rng: random.Random | None = None
    ) -> RetryDecision:
        """The decision after run number ``attempt`` failed with ``error``."""
        if isinstance(error, OutcomeFailed):
            return RetryDecision(Verdict.FAILED, reason="outcome_failed")
        if isinstance(error, FatalTaskError) or (
            self.fatal_on and isinstance(error, self.fatal_on)
        ):
            return RetryDecision(Verdict.DEAD, reason="fatal")
        if self.retry_on and not isinstance(error, (RetryableTaskError, *self.retry_on)):
            return RetryDecision(Verdict.DEAD, reason="fatal")
        if attempt >= self.max_attempts:
            return RetryDecision(Verdict.DEAD, reason="exhausted")
        if isinstance(error, RetryableTaskError) and error.delay is not None:
            return RetryDecision(Verdict.RETRY, delay=error.delay)
        return RetryDecision(Verdict.RETRY, delay=self.backoff(attempt, rng))


DEFAULT_POLICY = RetryPolicy()
# Failures caused by an outage of Redis, the broker or the database: retried with a backoff that
# grows to two minutes, about ten minutes in all, so a restart or failover does not use up a
# task's attempts in seconds (see ``relay.resilience.outages``).
INFRASTRUCTURE_POLICY = RetryPolicy(max_attempts=12, base_delay=2.0, max_delay=120.0)
NO_RETRY = RetryPolicy(max_attempts=1)
