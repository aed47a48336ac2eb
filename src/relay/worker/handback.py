"""Hand back, after a broker reconnection, the messages a worker dropped when it lost Redis.

When the consumer's broker connection breaks, Celery forgets the messages it had reserved but not
yet started, counting on the broker to deliver them again. kombu's Redis transport does that by
moving a closed channel's unacknowledged messages from its ``unacked`` hash back to their queue,
once, when the channel closes. After a Redis crash the channel closes while Redis is still down,
so that move fails and is not tried again: the messages stay in ``unacked`` until the visibility
timeout (hours), and relay's records say RECEIVED by a worker that is alive, so the reaper rightly
leaves them alone. With AOF the hash survives the restart; without persistence the records of
such messages are all that is left.

``HandBackStep`` is a consumer bootstep: each time the consumer starts on a new connection it
moves the previous channel's unacknowledged messages that no running task holds back to their
queues (what the close should have done), through the new connection. Running tasks keep theirs:
they acknowledge them when they finish. A move that fails (Redis down again) is retried at the
next start. Transports without Redis's acknowledgement emulation are left alone.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps
from celery.worker.state import active_requests

from relay.adapters.redis_transport import QoS as RedisQoS

log = logging.getLogger(__name__)


def emulates_acks(qos: Any) -> bool:
    """Whether ``qos`` is relay's Redis acknowledgement emulation (an ``unacked`` hash)."""
    return isinstance(qos, RedisQoS)


def running_tags() -> set[Any]:
    """Delivery tags of the messages whose tasks run in this worker now."""
    tags = set()
    for request in list(active_requests):
        message = getattr(request, "message", None)
        if message is not None:
            tags.add(message.delivery_tag)
    return tags


def hand_back(previous: Any, current: Any, running: set[Any]) -> list[str]:
    """Move ``previous``'s unacknowledged messages not in ``running`` back to their queues
    through ``current``; returns their task ids. Raises the connection error of a failed move
    (what was moved before it is done; the rest stays for the next try)."""
    # Tasks still running acknowledge through the new channel from now on.
    previous.successor = current
    moved = []
    for tag, message in list(previous._delivered.items()):
        if tag in running or tag in previous._dirty:  # running, or acknowledged already
            continue
        # One WATCH/MULTI transaction: takes the message out of ``unacked`` and pushes it back
        # on its queue; a message already acknowledged or restored is not there and is skipped.
        current.restore_by_tag(tag)
        previous._delivered.pop(tag, None)
        moved.append(str((getattr(message, "headers", None) or {}).get("id", tag)))
    return moved


class HandBackStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Hand back what the previous connection's channel held when the consumer reconnects."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, consumer: Any, **kwargs: Any) -> None:
        super().__init__(consumer, **kwargs)
        self.current: Any = None
        self.pending: list[Any] = []  # QoS of earlier channels with messages still to hand back

    def start(self, consumer: Any) -> None:
        qos = getattr(getattr(consumer.task_consumer, "channel", None), "qos", None)
        if not emulates_acks(qos):
            return
        if self.current is not None and self.current is not qos:
            self.pending.append(self.current)
        self.current = qos
        running = running_tags()
        for previous in list(self.pending):
            try:
                moved = hand_back(previous, qos, running)
            except Exception:
                # Redis went away again: the consumer restarts and the next start tries again.
                log.warning(
                    "could not hand back messages after a reconnection",
                    extra={"action": "worker.handback_failed"},
                    exc_info=True,
                )
                return
            if moved:
                log.warning(
                    "handed back messages held before the broker reconnection",
                    extra={"action": "worker.handed_back", "task_ids": moved},
                )
            if not previous._delivered:  # running tasks' acknowledgements may still fail
                self.pending.remove(previous)
