"""Resource pressure: CPU, memory and ``var/`` disk, sampled on a background helper.

A resource turns *hot* when its share stays at or above its ``*_high`` threshold for ``sustain``
samples in a row, and cools when it falls below ``*_low`` (hysteresis: between the two nothing
changes, so the state does not flap). The process is under pressure while any resource is hot.
The low-priority queues (``RELAY_PRESSURE_SHED_QUEUES``) are sandbox-plan work (paid plans have
their own ``priority_*`` and ``workflow_*`` queues) and deferrable housekeeping; monitoring,
maintenance, mail, run storage and paid plans keep running.
Listeners hear each change: the worker stops consuming its low-priority queues and takes them
up again (``relay.worker.pressure``), admission refuses new work with 429 and ``Retry-After``
(``relay.scheduling.pressure``), and an alert is raised (composition).

The sampler is injectable: :class:`PsutilSampler` in production, a scripted one
(``relay.testing.ScriptedSampler``) in tests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psutil

from relay.background import Background
from relay.config import PressureSettings

log = logging.getLogger(__name__)

RESOURCES = ("cpu", "memory", "disk")


@dataclass(frozen=True)
class Sample:
    """Shares in use, 0..1."""

    cpu: float
    memory: float
    disk: float

    def get(self, name: str) -> float:
        value: float = getattr(self, name)
        return value


class Sampler(Protocol):
    """Measures the resources now."""

    def __call__(self) -> Sample: ...


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class PsutilSampler:
    """CPU since the previous sample, memory in use, and the disk that holds ``var_dir``."""

    def __init__(self, var_dir: Path) -> None:
        self.var_dir = var_dir
        psutil.cpu_percent(interval=None)  # the first call only starts the measurement

    def __call__(self) -> Sample:
        return Sample(
            cpu=psutil.cpu_percent(interval=None) / 100,
            memory=psutil.virtual_memory().percent / 100,
            disk=psutil.disk_usage(str(_existing(self.var_dir))).percent / 100,
        )


@dataclass(frozen=True)
class PressureState:
    """Under pressure or not, which resources are hot, the last sample, since when."""

    active: bool
    hot: tuple[str, ...] = ()
    sample: Sample | None = None
    since: float = field(default_factory=time.time)


Listener = Callable[[PressureState], None]


class PressureMonitor:
    """Samples on a ``Periodic`` of ``background`` and tells listeners when pressure changes."""

    def __init__(
        self,
        sampler: Sampler,
        settings: PressureSettings,
        *,
        background: Background | None = None,
        listeners: list[Listener] | None = None,
    ) -> None:
        self.sampler = sampler
        self.settings = settings
        self.state = PressureState(active=False)
        self._listeners: list[Listener] = list(listeners or [])
        self._above: dict[str, int] = dict.fromkeys(RESOURCES, 0)
        self._hot: set[str] = set()
        self._lock = threading.Lock()
        owner = background if background is not None else Background()
        self._job = owner.periodic("pressure", self.tick, settings.interval)

    @property
    def active(self) -> bool:
        return self.state.active

    def subscribe(self, listener: Listener) -> None:
        """Hear every change from now on (the worker's queue shedder subscribes when it starts)."""
        with self._lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def start(self) -> None:
        """Start sampling in this process (when enabled)."""
        if self.settings.enabled:
            self._job.ensure()

    def thresholds(self, name: str) -> tuple[float, float]:
        high: float = getattr(self.settings, f"{name}_high")
        low: float = getattr(self.settings, f"{name}_low")
        return high, low

    def tick(self) -> PressureState:
        """Take one sample and judge it; listeners hear a change of state."""
        sample = self.sampler()
        with self._lock:
            for name in RESOURCES:
                high, low = self.thresholds(name)
                value = sample.get(name)
                self._above[name] = self._above[name] + 1 if value >= high else 0
                if self._above[name] >= self.settings.sustain:
                    self._hot.add(name)
                elif value < low:
                    self._hot.discard(name)
            hot = tuple(sorted(self._hot))
            changed = bool(hot) != self.state.active
            if changed:
                self.state = PressureState(active=bool(hot), hot=hot, sample=sample)
            else:
                self.state = PressureState(self.state.active, hot, sample, self.state.since)
            state, listeners = self.state, list(self._listeners)
        if changed:
            log.log(
                logging.ERROR if state.active else logging.WARNING,
                "resource pressure " + ("starts: " + ", ".join(hot) if state.active else "ends"),
                extra={
                    "action": "pressure.on" if state.active else "pressure.off",
                    "cpu": round(sample.cpu, 3),
                    "memory": round(sample.memory, 3),
                    "disk": round(sample.disk, 3),
                },
            )
            for listener in listeners:
                try:
                    listener(state)
                except Exception:
                    log.exception(
                        "pressure listener failed", extra={"action": "pressure.listener_failed"}
                    )
        return state
