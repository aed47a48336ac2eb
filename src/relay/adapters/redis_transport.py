"""kombu's Redis transport, with a channel close that survives a Redis crash.

When a worker loses Redis, Celery collects and then closes the broken connection. Closing the
channel moves the messages it still held from Redis's ``unacked`` hash back to their queues
(kombu's acknowledgement emulation). After a crash that move cannot work: Redis is down, or the
collected connection has no client any more, and kombu then raises ``AttributeError``, which
Celery does not expect there and which stops the whole worker ("Unrecoverable error").

Here a failed move leaves the messages where they are: in ``unacked`` and in the channel's
delivered set, from where the worker's ``HandBackStep`` moves them back once it is connected
again (``relay.worker.handback``); tasks still running then acknowledge through the new channel
(an acknowledgement through a closed channel would fail and leave the message in ``unacked``
until the visibility timeout). Commands sent outside the event loop share one client per channel
(kombu builds one per command). Everything else is kombu's transport unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual as kombu_virtual
from redis.exceptions import ConnectionError as RedisConnectionError

log = logging.getLogger(__name__)

TRANSPORT = "relay.adapters.redis_transport:Transport"


class QoS(kombu_redis.QoS):  # type: ignore[misc]
    """Acknowledgement emulation whose messages outlive their channel.

    ``successor`` is the QoS of the channel that replaced this one after a reconnection (set by
    the worker's ``HandBackStep``): tasks that were running when the connection broke finish
    later and acknowledge through it, since this channel has no connection any more.
    """

    successor: QoS | None = None

    def live(self) -> QoS:
        """The QoS whose channel is connected: this one, or the last of its successors."""
        current = self
        while current.successor is not None:
            current = current.successor
        return current

    def ack(self, delivery_tag: Any) -> None:
        live = self.live()
        try:
            live._remove_from_indices(delivery_tag).execute()
        except AttributeError as exc:  # the channel's connection was collected
            raise RedisConnectionError("the channel of this message is closed") from exc
        kombu_virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        live = self.live()
        try:
            if requeue:
                live.restore_by_tag(delivery_tag, leftmost=True)
            else:
                live._remove_from_indices(delivery_tag).execute()
        except AttributeError as exc:
            raise RedisConnectionError("the channel of this message is closed") from exc
        kombu_virtual.QoS.ack(self, delivery_tag)

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
    _command_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        """One client per channel and pool for the commands sent outside the event loop.

        kombu builds a new client for each of them (every publish, acknowledgement, restore),
        and building one fills its table of response callbacks: a tenth of a worker's main
        process CPU went there. The client holds nothing but its pool (thread-safe), so one
        serves them all; a new pool (after a reconnection) gets a new client.
        """
        if asynchronous:
            return super()._create_client(asynchronous=True)
        pool = self.pool
        client = self._command_client
        if client is None or client.connection_pool is not pool:
            client = self._command_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel
