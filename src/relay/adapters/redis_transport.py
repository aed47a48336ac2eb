"""kombu's Redis transport, with a channel close that survives a Redis crash.

When a worker loses Redis, Celery collects and then closes the broken connection. Closing the
channel moves the messages it still held from Redis's ``unacked`` hash back to their queues
(kombu's acknowledgement emulation). After a crash that move cannot work: Redis is down, or the
collected connection has no client any more, and kombu then raises ``AttributeError``, which
Celery does not expect there and which stops the whole worker ("Unrecoverable error").

Here a failed move leaves the messages where they are: in ``unacked`` and in the channel's
delivered set, from where the worker's ``HandBackStep`` moves them back once it is connected
again (``relay.worker.handback``). Everything else is kombu's transport unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)

TRANSPORT = "relay.adapters.redis_transport:Transport"


class QoS(kombu_redis.QoS):  # type: ignore[misc]
    def restore_unacked(self, client: Any = None) -> None:
        try:
            super().restore_unacked(client)
        except (AttributeError, *self.channel.connection_errors):
            log.warning(
                "unacknowledged messages not restored at the channel's close; "
                "they are handed back after the reconnection",
                extra={"action": "broker.restore_deferred", "messages": len(self._delivered)},
            )


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    QoS = QoS


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel
