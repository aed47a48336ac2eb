"""A worker under resource pressure stops consuming its low-priority queues, and takes them up
again when the pressure ends.

``PressureStep`` is a consumer bootstep: once the worker consumes its queues it starts the
runtime's :class:`~relay.resilience.pressure.PressureMonitor` in the worker's main process and
subscribes a :class:`QueueShedder`, which sends Celery's ``cancel_consumer`` / ``add_consumer``
control commands to this worker alone (by its hostname). Messages on a shed queue wait there;
no message is taken and held.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps

from relay.resilience.pressure import PressureMonitor, PressureState
from relay.worker.hooks import consumed_queues

log = logging.getLogger(__name__)


class QueueShedder:
    """Cancels and restores this worker's consumers of ``queues`` as pressure comes and goes."""

    def __init__(self, control: Any, hostname: str, queues: list[str], exchange: str) -> None:
        self.control = control
        self.hostname = hostname
        self.queues = queues
        self.exchange = exchange
        self.shed = False

    def __call__(self, state: PressureState) -> None:
        if state.active == self.shed or not self.queues:
            return
        for queue in self.queues:
            if state.active:
                self.control.cancel_consumer(queue, destination=[self.hostname], reply=False)
            else:
                self.control.add_consumer(
                    queue,
                    exchange=self.exchange,
                    routing_key=queue,
                    destination=[self.hostname],
                    reply=False,
                )
        self.shed = state.active
        log.warning(
            ("stopped" if state.active else "resumed") + " consuming low-priority queues",
            extra={
                "action": "pressure.shed" if state.active else "pressure.restore",
                "queues": self.queues,
                "hot": list(state.hot),
            },
        )


class PressureStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Shed low-priority queues under resource pressure (needs the app's ``pressure``)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, consumer: Any, **kwargs: Any) -> None:
        super().__init__(consumer, **kwargs)
        self.shedder: QueueShedder | None = None
        self.monitor: PressureMonitor | None = None

    def start(self, consumer: Any) -> None:
        monitor = getattr(consumer.app, "pressure", None)
        if not isinstance(monitor, PressureMonitor) or self.shedder is not None:
            return
        wanted = set(monitor.settings.shed_queues)
        queues = [q for q in consumed_queues(consumer) if q in wanted]
        self.shedder = QueueShedder(
            consumer.app.control,
            consumer.hostname,
            queues,
            str(consumer.app.conf.task_default_exchange or ""),
        )
        self.monitor = monitor
        monitor.subscribe(self.shedder)
        if monitor.active:  # pressure began before this worker consumed
            self.shedder(monitor.state)
        monitor.start()

    def shutdown(self, consumer: Any) -> None:
        # Not on ``stop``: a consumer restarted after a broker reconnect keeps its shedder (the
        # shed queues stay deselected in the app's queue set until pressure ends).
        if self.monitor is not None and self.shedder is not None:
            self.monitor.unsubscribe(self.shedder)
        self.shedder = None
        self.monitor = None
