"""Circuit breakers around outside dependencies (pybreaker): fail fast while one is down.

Each dependency (``broker`` for publishing, ``http:<host>`` for a task's outbound HTTP) has one
breaker per process. Only outages count as failures (``relay.resilience.outages``: connection
errors, timeouts, the ``InfrastructureError`` family): a refused argument or a 4xx says nothing
about the dependency's health. After ``fail_max`` consecutive outages the breaker opens and
calls fail at once with an ``InfrastructureError`` (the API answers 503, tasks retry on the
infrastructure policy, the outbox keeps its rows) instead of each waiting for its timeouts; after
``reset_timeout`` seconds one call is let through (half-open) and its outcome closes or reopens
the breaker. States are exported as ``relay_circuit_state`` (0 closed, 1 half-open, 2 open) and
openings as ``relay_circuit_opened_total``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pybreaker
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from relay.errors import InfrastructureError
from relay.resilience.outages import is_outage

log = logging.getLogger(__name__)

T = TypeVar("T")
STATE_VALUES = {"closed": 0, "half-open": 1, "open": 2}


class CircuitOpen(InfrastructureError):
    """A dependency's breaker is open: the call was not attempted."""

    code = "circuit_open"


def counts_as_failure(error: BaseException) -> bool:
    """Whether ``error`` says the dependency is down: an outage of Redis, the broker or the
    database, or a connection error or timeout of any client (HTTP included)."""
    return is_outage(error) or isinstance(
        error, (httpx.TransportError, ConnectionError, TimeoutError)
    )


def _not_a_failure(error: BaseException) -> bool:
    return not counts_as_failure(error)


class _Listener(pybreaker.CircuitBreakerListener):
    def __init__(self, owner: Breakers) -> None:
        self.owner = owner

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        old = getattr(old_state, "name", str(old_state))
        new = getattr(new_state, "name", str(new_state))
        name = cb.name or "unnamed"
        self.owner._since[name] = time.time()
        if new == "open":
            self.owner._opened(name)
        level = logging.ERROR if new == "open" else logging.WARNING
        log.log(
            level,
            f"circuit {name}: {old} -> {new}",
            extra={"action": "circuit.state", "circuit": name, "from": old, "to": new},
        )


class Breakers:
    """The process's breakers, one per dependency name, created on first use."""

    def __init__(self, *, fail_max: int = 5, reset_timeout: float = 10.0) -> None:
        self.fail_max = fail_max
        self.reset_timeout = reset_timeout
        self._breakers: dict[str, pybreaker.CircuitBreaker] = {}
        self._openings: dict[str, int] = {}
        self._since: dict[str, float] = {}
        self._lock = threading.Lock()
        self._listener = _Listener(self)

    def get(self, name: str) -> pybreaker.CircuitBreaker:
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None:
                breaker = pybreaker.CircuitBreaker(
                    fail_max=self.fail_max,
                    reset_timeout=self.reset_timeout,
                    exclude=[_not_a_failure],
                    listeners=[self._listener],
                    name=name,
                    # The call that trips the breaker raises its own error, not a new one.
                    throw_new_error_on_trip=False,
                )
                self._breakers[name] = breaker
            return breaker

    def call(
        self,
        name: str,
        function: Callable[..., T],
        *args: Any,
        unavailable: type[InfrastructureError] = CircuitOpen,
        **kwargs: Any,
    ) -> T:
        """``function(*args, **kwargs)`` through breaker ``name``; ``unavailable`` when open."""
        try:
            result: T = self.get(name).call(function, *args, **kwargs)
            return result
        except pybreaker.CircuitBreakerError as exc:
            raise unavailable(
                f"{name} is unavailable (circuit open); try again shortly",
                details={"retry_after": max(1, round(self.reset_timeout)), "circuit": name},
            ) from exc

    def state(self, name: str) -> str:
        """``closed``, ``half-open`` or ``open`` (``closed`` for a breaker never used)."""
        with self._lock:
            breaker = self._breakers.get(name)
        return str(breaker.current_state) if breaker is not None else "closed"

    def states(self) -> dict[str, str]:
        with self._lock:
            names = list(self._breakers)
        return {name: self.state(name) for name in names}

    def details(self) -> dict[str, dict[str, Any]]:
        """Per breaker: ``state``, consecutive ``failures``, and ``since`` (epoch seconds of its
        last change of state; None for a breaker that never changed)."""
        with self._lock:
            breakers = dict(self._breakers)
        out: dict[str, dict[str, Any]] = {}
        for name, breaker in breakers.items():
            out[name] = {
                "state": str(breaker.current_state),
                "failures": int(breaker.fail_counter),
                "since": self._since.get(name),
            }
        return out

    def openings(self) -> dict[str, int]:
        with self._lock:
            return dict(self._openings)

    def _opened(self, name: str) -> None:
        with self._lock:
            self._openings[name] = self._openings.get(name, 0) + 1


class BreakerCollector(Collector):
    """Breaker states and openings, read at scrape time."""

    def __init__(self, breakers: Breakers) -> None:
        self.breakers = breakers

    def collect(self) -> Iterator[Any]:
        state = GaugeMetricFamily(
            "relay_circuit_state",
            "Circuit breaker state per dependency (0 closed, 1 half-open, 2 open)",
            labels=["circuit"],
        )
        for name, value in self.breakers.states().items():
            state.add_metric([name], STATE_VALUES.get(value, 0))
        yield state
        opened = CounterMetricFamily(
            "relay_circuit_opened", "Times a circuit breaker opened", labels=["circuit"]
        )
        for name, count in self.breakers.openings().items():
            opened.add_metric([name], count)
        yield opened
