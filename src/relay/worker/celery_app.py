"""``RelayCelery``: the Celery app of a relay runtime, with its task middleware chain.

Built by the composition root with everything it needs: the configuration, the ``TaskChain``
its tasks run through, and the worker presence its consumers announce. Every message it publishes
(``send_task``, hence ``delay``, ``apply_async`` and retries) passes the chain's
``before_publish`` hooks first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError

from relay.background import Background
from relay.errors import BrokerUnavailable
from relay.monitoring.presence import WorkerPresence
from relay.resilience.breaker import Breakers
from relay.resilience.outages import as_outage
from relay.resilience.pressure import PressureMonitor
from relay.worker.handback import HandBackStep
from relay.worker.hooks import PresenceStep
from relay.worker.middleware import OutgoingMessage, TaskChain
from relay.worker.pressure import PressureStep


class RelayCelery(Celery):  # type: ignore[misc]
    """A Celery app whose tasks run through ``chain``."""

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        chain: TaskChain,
        presence: WorkerPresence | None = None,
        background: Background | None = None,
        breakers: Breakers | None = None,
        pressure: PressureMonitor | None = None,
    ) -> None:
        super().__init__("relay", set_as_current=True)
        self.conf.update(dict(config))
        self.chain = chain
        self.presence = presence
        self.background = background if background is not None else Background()
        # Publishing fails fast while the broker is down (the "broker" circuit).
        self.breakers = breakers if breakers is not None else Breakers()
        # Workers announce the queues they consume while they consume them.
        self.steps["consumer"].add(PresenceStep)
        # Under resource pressure a worker stops consuming its low-priority queues.
        self.pressure = pressure
        self.steps["consumer"].add(PressureStep)
        # After a broker reconnection, messages the old connection held go back to their queues.
        self.steps["consumer"].add(HandBackStep)
        self.set_default()

    def send_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        """Publish task ``name`` after the chain's ``before_publish`` hooks saw its headers.

        Raises ``BrokerUnavailable`` when the broker cannot be reached or refuses the message,
        or at once while the broker's circuit is open.
        """
        headers = dict(options.get("headers") or {})
        message = OutgoingMessage(
            task_name=name,
            task_id=options.get("task_id"),
            queue=options.get("queue"),
            headers=headers,
            args=args,
            kwargs=kwargs,
        )
        self.chain.before_publish(message)
        options["headers"] = dict(message.headers)
        # Task events (``celery events``, Flower) and Celery's logs show these instead of the
        # arguments, which may hold user content or secrets.
        options.setdefault("argsrepr", f"<{len(args or ())} argument(s) hidden>")
        options.setdefault("kwargsrepr", f"<{len(kwargs or {})} keyword argument(s) hidden>")
        return self.breakers.call(
            "broker", self._publish, name, args, kwargs, options, unavailable=BrokerUnavailable
        )

    def _get_backend(self) -> Any:
        backend = super()._get_backend()
        # Celery's Redis result backend subscribes to a task's result channel as the task is
        # published (and unsubscribes when the returned ``AsyncResult`` is collected): two Redis
        # commands per publish, for a result nobody may ever wait for (the outbox and the
        # dispatcher drop theirs). ``AsyncResult.get()`` subscribes itself before it reads the
        # stored result, so a waiter misses nothing when the publish does not subscribe.
        if getattr(backend, "on_task_call", None) is not None:
            backend.on_task_call = _no_subscription
        return backend

    def _publish(
        self,
        name: str,
        args: Sequence[Any] | None,
        kwargs: Mapping[str, Any] | None,
        options: dict[str, Any],
    ) -> Any:
        try:
            return super().send_task(name, args, kwargs, **options)
        except OperationalError as exc:
            raise BrokerUnavailable(f"the broker did not take {name}: {exc}") from exc
        except RuntimeError as exc:
            # The result backend gives up reconnecting its pub/sub with a RuntimeError whose
            # cause is the connection error; the next publish after recovery reconnects.
            if as_outage(exc) is None:
                raise
            raise BrokerUnavailable(f"Redis did not take {name}: {exc.__cause__}") from exc


def _no_subscription(producer: Any, task_id: str) -> None:
    """A publish does not subscribe to its result (``RelayCelery._get_backend``)."""
