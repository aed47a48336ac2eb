"""Resource pressure: thresholds with hysteresis, admission refusing with 429, queue shedding."""

from __future__ import annotations

from typing import Any

import pytest

from relay.config import PressureSettings, SchedulingSettings
from relay.errors import Overloaded
from relay.resilience.pressure import PressureMonitor, PressureState
from relay.scheduling.admission import Limit
from relay.scheduling.pressure import PressureAdmission
from relay.testing import InMemoryAdmission, ScriptedSampler
from relay.worker.pressure import QueueShedder

SETTINGS = PressureSettings(
    cpu_high=0.9, cpu_low=0.7, memory_high=0.9, memory_low=0.8, disk_high=0.95, disk_low=0.9,
    sustain=2, retry_after=7,
)  # fmt: skip


def monitor(sampler: ScriptedSampler, **changes: Any) -> PressureMonitor:
    return PressureMonitor(sampler, SETTINGS.model_copy(update=changes))


def test_pressure_needs_a_sustained_high_and_ends_only_below_low() -> None:
    sampler = ScriptedSampler()
    heard: list[PressureState] = []
    watch = monitor(sampler)
    watch.subscribe(heard.append)

    sampler.set(cpu=0.95)
    assert not watch.tick().active, "one sample above the threshold is not pressure yet"
    assert watch.tick().active
    assert watch.state.hot == ("cpu",)
    sampler.set(cpu=0.8)  # between low and high: nothing changes (no flapping)
    assert watch.tick().active
    sampler.set(cpu=0.95, memory=0.95)
    watch.tick()
    watch.tick()
    assert watch.state.hot == ("cpu", "memory")
    sampler.set(cpu=0.5, memory=0.85)
    assert watch.tick().active, "memory is still above its low mark"
    sampler.set(cpu=0.5, memory=0.5)
    assert not watch.tick().active
    assert [state.active for state in heard] == [True, False], "listeners hear changes only"


def test_a_failing_listener_does_not_silence_the_others() -> None:
    sampler = ScriptedSampler(disk=0.99)
    heard: list[bool] = []

    def broken(_: PressureState) -> None:
        raise RuntimeError("boom")

    watch = PressureMonitor(sampler, SETTINGS.model_copy(update={"sustain": 1}))
    watch.subscribe(broken)
    watch.subscribe(lambda state: heard.append(state.active))
    watch.tick()
    assert heard == [True]


def test_admission_refuses_under_pressure_with_retry_after_and_takes_no_tokens() -> None:
    sampler = ScriptedSampler()
    watch = monitor(sampler, sustain=1, enabled=False)
    inner = InMemoryAdmission(SchedulingSettings(rate_burst={"sandbox": 2}))
    admission = PressureAdmission(inner, watch)
    assert admission.check_submission("t1", "sandbox").allowed

    sampler.set(memory=0.99)
    watch.tick()
    refused = admission.check_submission("t1", "sandbox")
    assert not refused.allowed
    assert refused.limit is Limit.PRESSURE
    assert refused.retry_after_header == "7"
    with pytest.raises(Overloaded) as raised:
        refused.enforce()
    assert raised.value.status == 429
    assert raised.value.code == "overloaded"
    assert raised.value.details == {"limit": "resource_pressure", "retry_after": "7"}
    assert not admission.check_workflow_run("t1", "sandbox").allowed

    sampler.set()
    watch.tick()
    assert admission.check_submission("t1", "sandbox").allowed, "a refusal took no token"
    assert not admission.check_submission("t1", "sandbox").allowed  # the burst of 2 is used


class RecordingControl:
    """Celery's control commands, recorded instead of broadcast."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, str, list[str]]] = []

    def cancel_consumer(self, queue: str, **options: Any) -> None:
        self.commands.append(("cancel", queue, options["destination"]))

    def add_consumer(self, queue: str, **options: Any) -> None:
        assert options["routing_key"] == queue
        self.commands.append(("add", queue, options["destination"]))


def test_the_shedder_cancels_and_restores_its_own_consumers_once_per_change() -> None:
    control = RecordingControl()
    shedder = QueueShedder(control, "w1@host", ["dataset", "pipeline"], "relay")
    hot = PressureState(active=True, hot=("cpu",))
    shedder(hot)
    shedder(hot)
    shedder(PressureState(active=False))
    assert control.commands == [
        ("cancel", "dataset", ["w1@host"]),
        ("cancel", "pipeline", ["w1@host"]),
        ("add", "dataset", ["w1@host"]),
        ("add", "pipeline", ["w1@host"]),
    ]


def test_thresholds_must_keep_low_below_high() -> None:
    with pytest.raises(ValueError, match="cpu_low"):
        PressureSettings(cpu_high=0.5, cpu_low=0.6)
