"""Circuit breakers: outages open them, other errors do not, a trial call closes them again."""

from __future__ import annotations

import pytest
import redis
from prometheus_client import CollectorRegistry

from relay.errors import BrokerUnavailable
from relay.resilience.breaker import BreakerCollector, Breakers, CircuitOpen
from tests.waiting import wait_until


class Dependency:
    def __init__(self) -> None:
        self.down = True
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.down:
            raise redis.ConnectionError("Connection refused")
        return "ok"


def test_outages_open_the_circuit_and_a_trial_closes_it() -> None:
    breakers = Breakers(fail_max=3, reset_timeout=0.2)
    dependency = Dependency()
    for _ in range(3):
        with pytest.raises(redis.ConnectionError):
            breakers.call("redis", dependency)
    assert breakers.state("redis") == "open"
    with pytest.raises(CircuitOpen) as raised:
        breakers.call("redis", dependency)
    assert dependency.calls == 3, "an open circuit does not call the dependency"
    assert raised.value.status == 503
    assert raised.value.details["retry_after"] >= 1

    dependency.down = False
    # After the reset timeout one call goes through (half-open); its success closes the circuit.
    wait_until(lambda: _tries(breakers, dependency), timeout=5, what="the trial call")
    assert breakers.state("redis") == "closed"
    assert breakers.openings() == {"redis": 1}


def _tries(breakers: Breakers, dependency: Dependency) -> bool:
    try:
        return breakers.call("redis", dependency) == "ok"
    except CircuitOpen:
        return False


def test_errors_that_are_no_outage_do_not_count() -> None:
    breakers = Breakers(fail_max=2, reset_timeout=60)

    def refuses() -> None:
        raise ValueError("bad argument")

    for _ in range(5):
        with pytest.raises(ValueError, match="bad argument"):
            breakers.call("http:example", refuses)
    assert breakers.state("http:example") == "closed"


def test_the_error_of_an_open_circuit_can_be_the_dependency_s_own_kind() -> None:
    breakers = Breakers(fail_max=1, reset_timeout=60)
    with pytest.raises(redis.ConnectionError):
        breakers.call("broker", Dependency(), unavailable=BrokerUnavailable)
    with pytest.raises(BrokerUnavailable):
        breakers.call("broker", Dependency(), unavailable=BrokerUnavailable)


def test_states_are_metrics() -> None:
    breakers = Breakers(fail_max=1, reset_timeout=60)
    with pytest.raises(redis.ConnectionError):
        breakers.call("broker", Dependency())
    registry = CollectorRegistry()
    registry.register(BreakerCollector(breakers))
    assert registry.get_sample_value("relay_circuit_state", {"circuit": "broker"}) == 2
    assert registry.get_sample_value("relay_circuit_opened_total", {"circuit": "broker"}) == 1
