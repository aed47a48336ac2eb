"""Run events to clients: queue events, the per-run queue manager, channels and SSE framing.

::

    manager = AppQueueManager(run_id, user_id, InvokeFrom.SERVICE_API,
                              channel=RedisStreamChannel(client, retention=600, active_ttl=3600),
                              control=RedisRunControl(client))
    manager.publish(to_queue_event(engine_event))          # worker
    for item in manager.listen(after=last_event_id):       # any API process
        wire = sse.encode(item.data, event=item.event, id=item.id)
"""

from __future__ import annotations

from relay.streaming import sse
from relay.streaming.channels import (
    START,
    InMemoryRunChannel,
    RedisStreamChannel,
    RunChannel,
    StreamEntry,
)
from relay.streaming.errors import (
    RunFinishedError,
    RunStoppedError,
    StreamingError,
    UnsafeEventError,
)
from relay.streaming.queue_events import (
    TERMINAL_EVENTS,
    AppQueueEvent,
    ErrorEvent,
    MessageEndEvent,
    PingEvent,
    QueueEvent,
    StopBy,
    StopEvent,
    parse_queue_event,
    to_queue_event,
)
from relay.streaming.queue_manager import (
    AppQueueManager,
    InvokeFrom,
    QueueConfig,
    StreamItem,
    ensure_plain,
    owner_of,
)
from relay.streaming.run_control import (
    Claim,
    InMemoryRunControl,
    RedisRunControl,
    RunControl,
)
from relay.streaming.streams import RunStreams

__all__ = [
    # events
    "QueueEvent",
    "AppQueueEvent",
    "ErrorEvent",
    "MessageEndEvent",
    "PingEvent",
    "StopBy",
    "StopEvent",
    "TERMINAL_EVENTS",
    "parse_queue_event",
    "to_queue_event",
    # queue manager
    "AppQueueManager",
    "InvokeFrom",
    "QueueConfig",
    "StreamItem",
    "ensure_plain",
    "owner_of",
    # channels and control
    "START",
    "RunChannel",
    "StreamEntry",
    "RedisStreamChannel",
    "InMemoryRunChannel",
    "RunControl",
    "Claim",
    "RedisRunControl",
    "InMemoryRunControl",
    "RunStreams",
    # framing
    "sse",
    # errors
    "StreamingError",
    "RunStoppedError",
    "RunFinishedError",
    "UnsafeEventError",
]
