"""``Runtime``: the process's configured clients, passed explicitly instead of module globals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from relay.config import Settings
from relay.extensions.embedded import EmbeddedRedis
from relay.extensions.ext_db import Database
from relay.extensions.ext_metrics import Metrics

if TYPE_CHECKING:
    from relay.events.bus import EventBus
    from relay.events.outbox import Outbox
    from relay.tasks.lifecycle import TaskLifecycle


@dataclass
class Runtime:
    """Everything a service or task needs from the outside world."""

    settings: Settings
    redis_url: str
    db: Database
    redis: redis.Redis
    celery: Any
    metrics: Metrics
    outbox: Outbox
    bus: EventBus
    lifecycle: TaskLifecycle
    embedded_redis: EmbeddedRedis | None = None

    def close(self) -> None:
        """Release connections (the embedded Redis stays up until its owner exits)."""
        self.bus.flush()
        self.outbox.flush()
        self.lifecycle.flush()
        scheduler = getattr(self, "scheduler", None)
        if scheduler is not None:
            scheduler.close()
        self.db.close()
        self.redis.close()
