"""The tenant queue contract and the random model on the in-memory queue (clock by hand)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import settings

from relay.scheduling.tenant_queue_memory import InMemoryTenantQueue
from tests.unit.scheduling.contract import SETTINGS, Harness, TenantQueueContract
from tests.unit.scheduling.model import MODEL_SETTINGS, QueueMachine


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class TestInMemoryTenantQueue(TenantQueueContract):
    @pytest.fixture
    def harness(self) -> Harness:
        clock = FakeClock()
        return Harness(InMemoryTenantQueue(SETTINGS, clock), clock.advance)


class InMemoryMachine(QueueMachine):
    @staticmethod
    def make() -> tuple[InMemoryTenantQueue, Callable[[float], None]]:
        clock = FakeClock()
        return InMemoryTenantQueue(MODEL_SETTINGS, clock), clock.advance


InMemoryMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestInMemoryModel = InMemoryMachine.TestCase
